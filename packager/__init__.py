"""Workstation half: convert, compress, evaluate and bundle models for a device."""

__version__ = "0.1.0"
