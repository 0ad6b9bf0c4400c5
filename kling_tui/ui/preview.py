"""The preview pane: the selected task's images, drawn with textual-image."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widget import Widget
from textual.widgets import Static

from kling_tui.base.textsafe import plain
from kling_tui.history.thumbs import cached_thumbnail, load_small

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

PREVIEW_MAX_SIDE = 1024
# Cell-drawn images show one pixel per column and two per row: more pixels only make
# every redraw slower (a 1024 px preview took ~45 ms to redraw, 256 px ~15 ms).
CELL_PREVIEW_MAX_SIDE = 256
THUMB_SIDE = 256  # the size kept on disk (history/thumbs.py), shared by the preview and the grid
CELL_PROTOCOLS = ("halfcell", "unicode")
CACHE_SIZE = 48


def image_widget_class(protocol: str) -> Callable[..., Widget] | None:
    """The textual-image widget for a protocol name; None draws no image."""
    if protocol == "none":
        return None
    from textual_image import widget as tiw

    return {
        "auto": tiw.Image,
        "kitty": tiw.TGPImage,
        "sixel": tiw.SixelImage,
        "halfcell": tiw.HalfcellImage,
        "unicode": tiw.UnicodeImage,
    }[protocol]


class PreviewCache:
    """Downsized previews by (path, mtime): decode and resize once per file."""

    def __init__(self, size: int = CACHE_SIZE, max_side: int = PREVIEW_MAX_SIDE) -> None:
        self.max_side = max_side
        self.size = size
        self._items: OrderedDict[tuple[str, float], PILImage] = OrderedDict()

    def get(self, path: Path) -> PILImage | None:
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            return None
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def load(self, path: Path) -> PILImage:
        """Decode and shrink (blocking: call from a thread); cell-sized ones come from the disk cache."""
        cached = self.get(path)
        if cached is not None:
            return cached
        key = (str(path), path.stat().st_mtime)
        if self.max_side <= THUMB_SIDE:
            small = cached_thumbnail(path, THUMB_SIDE)
            if self.max_side < THUMB_SIDE:
                small = small.copy()
                small.thumbnail((self.max_side, self.max_side))
        else:
            small = load_small(path, self.max_side)
        self._items[key] = small
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return small


class PreviewPane(Vertical, can_focus=True):
    """Shows image `index` of the selected task; left/right step through them."""

    BINDINGS = [
        Binding("left,h", "step(-1)", "Prev image", id="preview.prev"),
        Binding("right,l", "step(1)", "Next image", id="preview.next"),
        Binding("enter", "app.fullscreen", "Full screen", id="preview.fullscreen"),
    ]

    def __init__(self, protocol: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protocol = protocol
        self.cache = PreviewCache(max_side=CELL_PREVIEW_MAX_SIDE if protocol in CELL_PROTOCOLS else PREVIEW_MAX_SIDE)
        self.paths: list[Path | None] = []
        self.urls: list[str] = []
        self.index = 0
        self.owner: str | None = None
        self._image_cls = image_widget_class(protocol)
        self._image: Widget | None = None
        self._lineage_line: Static | None = None
        self.shown: Path | None = None  # the file drawn right now (tests and benchmarks read it)
        self.series = False  # the images are one series: the caption says "series 2/4"

    def compose(self) -> ComposeResult:
        yield Static("", id="preview-caption")
        with Center(id="preview-body"):
            yield Static("Select a task to see its images.", id="preview-message")

    def on_mount(self) -> None:
        self.border_title = "Preview"

    def _lineage(self, lineage: str) -> None:
        """The line under the caption; mounted for the first task that has one."""
        if self._lineage_line is None:
            if not lineage:
                return
            self._lineage_line = Static("", id="preview-lineage")
            self.mount(self._lineage_line, after="#preview-caption")
        if lineage or self._lineage_line.display:
            self._lineage_line.update(Text(plain(lineage, keep_newlines=True)))
            self._lineage_line.display = bool(lineage)

    def _message(self, text: str) -> None:
        text = plain(text, keep_newlines=True)
        self.shown = None
        if self._image is not None:
            self._image.display = False
        message = self.query_one("#preview-message", Static)
        message.display = True
        # Its size comes from the pane (see app.tcss): no layout pass, which would cost a
        # full reflow on every cursor move.
        message.update(Text(text), layout=False)

    def show_task(
        self,
        owner: str | None,
        paths: list[Path | None],
        urls: list[str],
        status: str,
        note: str = "",
        *,
        lineage: str = "",
        series: bool = False,
    ) -> None:
        """Point the pane at a task; keeps the index when the same task refreshes.

        `lineage` says where the task came from and what was made from it.
        """
        if not self.children:
            return  # the app is shutting down
        if owner != self.owner:
            self.index = 0
        self.owner = owner
        self.series = series
        self._lineage(lineage)
        self.paths = paths
        self.urls = urls
        count = max(len(paths), len(urls))
        if owner is None:
            self._caption("")
            self._message("Select a task to see its images.")
            return
        if count == 0:
            self._caption("")
            self._message(note or f"No images yet ({status}).")
            return
        self.index = min(self.index, count - 1)
        self._draw()

    def _caption(self, text: str) -> None:
        self.query_one("#preview-caption", Static).update(Text(plain(text)), layout=False)  # one fixed line

    def _draw(self) -> None:
        count = max(len(self.paths), len(self.urls))
        path = self.paths[self.index] if self.index < len(self.paths) else None
        where = path.name if path else "not saved yet"
        position = f"{'series ' if self.series else ''}{self.index + 1}/{count}"
        self._caption(f"{position} · {where} · ←/→ to step" if count > 1 else f"{position} · {where}")
        if path is None:
            self._message("Saving the image…")
            return
        if self._image_cls is None:
            self._message(f"Image saved at {path}\n(--image-protocol none)")
            self.shown = path
            return
        cached = self.cache.get(path)
        if cached is not None:
            self._put(path, cached)
        else:
            self._load(path)

    @work(thread=True, exclusive=True, group="preview")
    def _load(self, path: Path) -> None:
        try:
            image = self.cache.load(path)
        except Exception as exc:  # an unreadable file must not take the app down
            self.app.call_from_thread(self._message, f"Cannot show {path.name}: {exc}")
            return
        self.app.call_from_thread(self._put, path, image)

    def _put(self, path: Path, image: PILImage) -> None:
        current = self.paths[self.index] if self.index < len(self.paths) else None
        if current != path:
            return
        self.query_one("#preview-message", Static).display = False
        if self._image is None:
            assert self._image_cls is not None
            self._image = self._image_cls(image, classes="preview-image")
            self.query_one("#preview-body").mount(self._image)
        else:
            self._image.image = image  # type: ignore[attr-defined]
            self._image.display = True
        self.shown = path

    def action_step(self, delta: int) -> None:
        count = max(len(self.paths), len(self.urls))
        if count == 0:
            return
        self.index = (self.index + delta) % count
        self._draw()

    @property
    def current_path(self) -> Path | None:
        return self.paths[self.index] if self.index < len(self.paths) else None

    @property
    def current_url(self) -> str | None:
        return self.urls[self.index] if self.index < len(self.urls) else None
