"""`kling-tui mcp`: the Model Context Protocol over stdio, so an AI assistant can generate,
follow and find tasks through the same workbench and history as the TUI and the CLI.

May import work, config, history, api and base; never Textual, Rich, ui or cli.
"""
