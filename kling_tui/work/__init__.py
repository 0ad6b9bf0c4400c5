"""The loop shared by the TUI and the CLI: the workbench (submit, queue, recover), the tracker
(one list request per cycle), the slot budget and the variant matrix.

May import `api`, `history`, `base` and `config`; never Textual, the UI or the CLI.
"""
