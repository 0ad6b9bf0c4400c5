"""Small helpers every layer may use: where files live, atomic writes, logging, safe text,
word diffs and opening files. Imports nothing else of kling_tui.
"""
