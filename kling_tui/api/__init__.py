"""The Kling image API: auth, the HTTP client, request and task types, the rules every request
must pass (shared with the sandbox), the model capability table, downloads and webhooks.

Imports nothing of kling_tui but `kling_tui.base`; never Textual.
"""
