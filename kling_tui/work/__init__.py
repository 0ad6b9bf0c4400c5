"""The loop shared by the TUI and the CLI: the workbench (submit, queue, recover), the tracker
(one list request per cycle), the slot budget, the variant matrix, and input images named by
file, URL or past task (references, with their lineage).

May import `api`, `history`, `base` and `config`; never Textual, the UI or the CLI.
"""
