"""The Textual user interface: a thin layer over kling_tui's core."""
