"""Helpers every packager stage may use (progress bars). It imports nothing from the packager."""
