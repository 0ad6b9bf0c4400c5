"""A part of a screen that is hidden at first, built when it is first needed."""

from __future__ import annotations

from collections.abc import Callable

from textual.containers import Vertical
from textual.widget import AwaitMount, Widget


class Deferred(Vertical):
    """Holds the widgets `make()` returns once `build()` is called; until then it is empty,
    so the first frame does not pay for fields it does not show (each Input costs ~2 ms)."""

    DEFAULT_CSS = "Deferred { height: auto; }"

    def __init__(self, make: Callable[[], list[Widget]], *, id: str) -> None:
        super().__init__(id=id)
        self._make = make
        self.built = False

    def build(self) -> AwaitMount:
        """Mount the widgets (once); await the result for them to be ready."""
        self.built = True
        return self.mount_all(self._make())
