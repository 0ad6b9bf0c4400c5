"""The full-screen viewer: one image on the whole terminal, stepping through images and tasks."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from kling_tui.base.textsafe import plain
from kling_tui.history.store import HistoryStore, TaskRecord
from kling_tui.history.thumbs import cached_thumbnail, load_small
from kling_tui.ui.preview import CELL_PROTOCOLS, THUMB_SIDE, image_widget_class

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

MODES = ("fit", "1:1", "zoom")
ZOOM = 2  # "zoom" shows a region half the size of 1:1, twice as large
PAN_STEP = 0.25  # of the region shown, per key press
FIT_MAX_SIDE = 4096
CACHE_SIZE = 8


def cell_pixels(protocol: str) -> tuple[int, int]:
    """Image pixels one terminal cell shows at 1:1."""
    if protocol in CELL_PROTOCOLS:
        return 1, 2  # half-blocks: a pixel a column, two a row
    try:
        from textual_image._terminal import get_cell_size  # asks the terminal once, then cached

        size = get_cell_size()
        if size.width > 0 and size.height > 0:
            return size.width, size.height
    except Exception:
        pass
    return 10, 20


def fit_cells(image_px: tuple[int, int], area: tuple[int, int], pixels: tuple[int, int]) -> tuple[int, int]:
    """The largest size in cells, within `area`, that shows the image with its aspect kept."""
    natural_w, natural_h = image_px[0] / pixels[0], image_px[1] / pixels[1]
    scale = min(area[0] / natural_w, area[1] / natural_h)
    return max(1, int(natural_w * scale)), max(1, int(natural_h * scale))


def size_image(widget: Widget, image: PILImage, area: tuple[int, int], protocol: str) -> None:
    """Give an image widget the cells that keep its aspect (textual-image stretches to its box)."""
    width, height = fit_cells(image.size, area, cell_pixels(protocol))
    widget.styles.width = width
    widget.styles.height = height


def view_box(
    image_size: tuple[int, int], area: tuple[int, int], mode: str, center: tuple[float, float]
) -> tuple[int, int, int, int] | None:
    """The region of the image shown in `mode` (None: the whole image, fitted).

    `area` is the viewing area in image pixels at 1:1; `center` is where the region is
    centred, as fractions of the image's width and height. The region stays inside the image.
    """
    if mode == "fit":
        return None
    width, height = image_size
    scale = ZOOM if mode == "zoom" else 1
    box_w = max(1, min(width, area[0] // scale))
    box_h = max(1, min(height, area[1] // scale))
    left = round(center[0] * width - box_w / 2)
    top = round(center[1] * height - box_h / 2)
    left = min(max(0, left), width - box_w)
    top = min(max(0, top), height - box_h)
    return left, top, left + box_w, top + box_h


class ViewerScreen(Screen[None]):
    """Image `index` of task `order[row]`; left/right step images, up/down step tasks."""

    BINDINGS = [
        Binding("escape,q", "close", "Back", id="viewer.close"),
        Binding("left,h", "image(-1)", "Previous image", id="viewer.prev_image"),
        Binding("right,l", "image(1)", "Next image", id="viewer.next_image"),
        Binding("up,k", "task(-1)", "Previous task", id="viewer.prev_task"),
        Binding("down,j", "task(1)", "Next task", id="viewer.next_task"),
        Binding("z", "cycle_mode", "Fit / 1:1 / zoom", id="viewer.mode"),
        Binding("shift+left,H", "pan(-1, 0)", "Pan left", show=False, id="viewer.pan_left"),
        Binding("shift+right,L", "pan(1, 0)", "Pan right", show=False, id="viewer.pan_right"),
        Binding("shift+up,K", "pan(0, -1)", "Pan up", show=False, id="viewer.pan_up"),
        Binding("shift+down,J", "pan(0, 1)", "Pan down", show=False, id="viewer.pan_down"),
    ]

    def __init__(self, store: HistoryStore, order: Sequence[str], row: int, index: int, protocol: str) -> None:
        super().__init__()
        self.store = store
        self.order = list(order)
        self.row = min(max(0, row), max(0, len(self.order) - 1))
        self.index = index
        self.protocol = protocol
        self.mode = "fit"
        self.center = (0.5, 0.5)
        self._image_cls = image_widget_class(protocol)
        self._image: Widget | None = None
        self._fitted: OrderedDict[tuple[str, int], PILImage] = OrderedDict()
        self._full: tuple[str, PILImage] | None = None
        self.record: TaskRecord | None = None
        self.paths: list[Path] = []
        # What is drawn now: (local id, image index, mode, box), read by tests and benchmarks.
        self.shown: tuple[str, int, str, tuple[int, int, int, int] | None] | None = None

    def compose(self) -> ComposeResult:
        with Center(id="viewer-body"):
            yield Static("", id="viewer-message")
        with Vertical(id="viewer-bar"):
            yield Static("", id="viewer-info", classes="bar-line")
            yield Static("", id="viewer-prompt", classes="bar-line")

    def on_mount(self) -> None:
        self.call_after_refresh(self._show)  # once laid out: the image is sized to the screen

    def on_resize(self) -> None:
        self._show()

    # -- what is shown -------------------------------------------------------------------
    @property
    def current_path(self) -> Path | None:
        return self.paths[self.index] if 0 <= self.index < len(self.paths) else None

    def _show(self) -> None:
        if not self.order:
            self._message("No tasks to show.")
            return
        self.record = self.store.get(self.order[self.row])
        record = self.record
        folder = self.store.task_dir(self.order[self.row])
        self.paths = [folder / name for name in record.image_paths] if record else []
        self.index = min(max(0, self.index), max(0, len(self.paths) - 1))
        self._bar()
        path = self.current_path
        if record is None or path is None:
            status = record.status.replace("_", " ") if record else "gone from the history"
            self._message(f"No saved images for this task ({status}). ↑/↓ for other tasks, escape to go back.")
            return
        if self._image_cls is None:
            self._message(f"Image saved at {path}\n(--image-protocol none)")
            self.shown = (record.local_id, self.index, self.mode, None)
            return
        body = self.query_one("#viewer-body").size
        ppx, ppy = cell_pixels(self.protocol)
        area = (max(1, body.width * ppx), max(1, body.height * ppy))
        cached = self._fitted.get((str(path), max(area))) if self.mode == "fit" else None
        if cached is not None:
            self._put(record.local_id, self.index, path, cached, None)
        else:
            self._load(record.local_id, self.index, path, self.mode, area, self.center)

    @work(thread=True, exclusive=True, group="viewer")
    def _load(
        self, local_id: str, index: int, path: Path, mode: str, area: tuple[int, int], center: tuple[float, float]
    ) -> None:
        try:
            if mode == "fit":
                side = min(FIT_MAX_SIDE, max(area))
                # Cell-drawn images at terminal sizes fit in the thumbnail the preview already made.
                image = cached_thumbnail(path, THUMB_SIDE) if side <= THUMB_SIDE else load_small(path, side)
                box = None
                self._fitted[(str(path), max(area))] = image
                while len(self._fitted) > CACHE_SIZE:
                    self._fitted.popitem(last=False)
            else:
                if self._full is None or self._full[0] != str(path):
                    self._full = (str(path), load_small(path, 1 << 30))  # full size, within the pixel limit
                full = self._full[1]
                box = view_box(full.size, area, mode, center)
                image = full.crop(box) if box else full
        except Exception as exc:  # a damaged or huge file is a message, never a crash
            self.app.call_from_thread(self._message, f"Cannot show {path.name}: {exc}")
            return
        self.app.call_from_thread(self._put, local_id, index, path, image, box)

    def _put(
        self, local_id: str, index: int, path: Path, image: PILImage, box: tuple[int, int, int, int] | None
    ) -> None:
        if self.current_path != path or not self.is_attached:
            return  # the user moved on
        self.query_one("#viewer-message", Static).display = False
        body = self.query_one("#viewer-body")
        if self._image is None:
            assert self._image_cls is not None
            self._image = self._image_cls(image, classes="viewer-image")
            size_image(self._image, image, (body.size.width, body.size.height), self.protocol)
            body.mount(self._image)
        else:
            self._image.image = image  # type: ignore[attr-defined]
            size_image(self._image, image, (body.size.width, body.size.height), self.protocol)
            self._image.display = True
        if box is not None and self._full is not None:
            # Centre on what is shown: panning at an edge must not wander past it.
            width, height = self._full[1].size
            self.center = ((box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height)
        self.shown = (local_id, index, self.mode, box)
        if len(self.paths) > 1:
            self._prefetch([self.paths[(index + 1) % len(self.paths)], self.paths[(index - 1) % len(self.paths)]])

    @work(thread=True, exclusive=True, group="viewer-prefetch")
    def _prefetch(self, paths: list[Path]) -> None:
        """Make the neighbours' thumbnails now, so that stepping to them does not wait for a decode."""
        for path in paths:
            try:
                cached_thumbnail(path, THUMB_SIDE)
            except Exception:
                pass  # shown as a message when the user gets there

    def _message(self, text: str) -> None:
        self.shown = None
        if self._image is not None:
            self._image.display = False
        message = self.query_one("#viewer-message", Static)
        message.display = True
        message.update(Text(plain(text, keep_newlines=True)))

    def _bar(self) -> None:
        record = self.record
        count = len(self.paths)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{self.index + 1 if count else 0}/{count}", style="bold")
        line.append(f" · task {self.row + 1}/{len(self.order)} · {self.mode}")
        if record is not None:
            details: list[Any] = [record.model, record.aspect_ratio, record.params.get("resolution"), record.status]
            if record.units:
                details.append(f"{record.units} units")
            line.append(" · " + " · ".join(plain(d) for d in details if d))
        line.append("   ←→ image  ↑↓ task  z zoom  esc back", style="dim")
        prompt = Text(no_wrap=True, overflow="ellipsis")
        if record is not None:
            prompt.append(plain(" ".join(record.prompt.split())) or "(no prompt)")
            negative = record.params.get("negative_prompt")
            if negative:
                prompt.append("  not: ", style="dim")
                prompt.append(plain(" ".join(str(negative).split())))
        self.query_one("#viewer-info", Static).update(line)
        self.query_one("#viewer-prompt", Static).update(prompt)

    # -- keys ----------------------------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_image(self, delta: int) -> None:
        if len(self.paths) > 1:
            self.index = (self.index + delta) % len(self.paths)
            self.center = (0.5, 0.5)
            self._show()

    def action_task(self, delta: int) -> None:
        row = self.row + delta
        if 0 <= row < len(self.order):
            self.row, self.index, self.center = row, 0, (0.5, 0.5)
            self._show()

    def action_cycle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self._show()

    def action_pan(self, dx: int, dy: int) -> None:
        if self.mode == "fit" or self._full is None or self.shown is None or self.shown[3] is None:
            return
        left, top, right, bottom = self.shown[3]
        width, height = self._full[1].size
        x = self.center[0] + dx * PAN_STEP * (right - left) / width
        y = self.center[1] + dy * PAN_STEP * (bottom - top) / height
        self.center = (min(max(0.0, x), 1.0), min(max(0.0, y), 1.0))
        self._show()
