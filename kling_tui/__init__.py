"""kling-tui: a keyboard-driven terminal app for the Kling AI image API."""

__version__ = "0.1.0"
