"""The package version (one place; saved fits record it)."""

__version__ = "0.1.0"
