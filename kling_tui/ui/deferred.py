"""Parts of a screen built when first needed: hidden at first, or opened by the user."""

from __future__ import annotations

from collections.abc import Callable

from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widget import AwaitMount, Widget
from textual.widgets import Static


class Deferred(Vertical):
    """Holds the widgets `make()` returns once `build()` is called; until then it is empty,
    so the first frame does not pay for fields it does not show (each Input costs ~2 ms)."""

    DEFAULT_CSS = "Deferred { height: auto; }"

    def __init__(self, make: Callable[[], list[Widget]], *, id: str, on_demand: bool = False) -> None:
        super().__init__(id=id)
        self._make = make
        self.built = False
        self.on_demand = on_demand  # built only when the user opens it (see Opener)

    def build(self) -> AwaitMount:
        """Mount the widgets (once); await the result for them to be ready."""
        self.built = True
        return self.mount_all(self._make())


class Opener(Static, can_focus=True):
    """The one line that stands for a Deferred group until the user opens it (enter, space or
    a click); the form then builds the group and hides this line."""

    BINDINGS = [Binding("enter,space", "open", "Open", show=False)]

    class Opened(Message):
        def __init__(self, opener: Opener) -> None:
            super().__init__()
            self.opener = opener

        @property
        def control(self) -> Opener:
            return self.opener

    def action_open(self) -> None:
        self.post_message(self.Opened(self))

    def on_click(self) -> None:
        self.action_open()
