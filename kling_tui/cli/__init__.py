"""The command line: `main` parses the arguments and starts the TUI, the sandbox, or one of
the headless commands (a module each). Never imports Textual except to start the TUI.
"""

from kling_tui.cli.main import main

__all__ = ["main"]
