"""Small helpers every layer may use: where files live, atomic writes, which process owns
what, logging, safe text, word diffs and opening files. Imports nothing else of kling_tui.
"""
