"""The local history: one TOML file per task written ahead of every request, the SQLite index
over them, the form's draft, and the models the service said are discontinued.

May import `kling_tui.base` and `kling_tui.api`; never the work loop, the UI or the CLI.
"""
