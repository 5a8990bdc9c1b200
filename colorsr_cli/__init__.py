"""colorsr: restore old photos and films (colourise + 4x super-resolution)."""

__version__ = "0.1.0"
