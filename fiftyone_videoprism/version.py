"""The package version: the one place it is written (pyproject.toml and the plugin manifest
read it from here)."""

__version__ = "0.2.0"
