"""Messages the core's events become inside the app."""

from __future__ import annotations

from textual.message import Message

from kling_tui.history.store import TaskRecord


class RecordChanged(Message):
    """A history record changed (status, images, note...)."""

    def __init__(self, record: TaskRecord) -> None:
        super().__init__()
        self.record = record


class BackgroundError(Message):
    """A background job (polling, saving images) failed; shown, never fatal."""

    def __init__(self, error: Exception, where: str) -> None:
        super().__init__()
        self.error = error
        self.where = where
