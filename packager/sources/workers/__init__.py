"""Scripts run by the converter environments' Pythons (packager.sources.environments)."""
