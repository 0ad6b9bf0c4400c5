"""Result images: real PNGs drawn from the prompt, the same bytes for the same inputs."""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
import threading
from collections import OrderedDict
from functools import lru_cache

MEGAPIXELS = {"1k": 1024 * 1024, "2k": 2048 * 2048}


def _round8(value: float) -> int:
    return max(8, round(value / 8) * 8)


def output_size(aspect_ratio: str | None, resolution: str | None) -> tuple[int, int]:
    """Width and height for an aspect ratio like "16:9" at 1k (~1 MP) or 2k (~4 MP)."""
    try:
        w_part, h_part = (aspect_ratio or "16:9").split(":")
        ratio = float(w_part) / float(h_part)
    except ValueError:
        ratio = 16 / 9
    area = MEGAPIXELS.get(resolution or "1k", MEGAPIXELS["1k"])
    width = _round8(math.sqrt(area * ratio))
    return width, _round8(width / ratio)


@lru_cache(maxsize=16)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: only the small bitmap font
        return ImageFont.load_default()


def render_png(prompt: str, index: int, width: int, height: int) -> bytes:
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"{prompt}\0{index}\0{width}x{height}".encode()).digest()
    # A smooth four-colour gradient: a 2x2 image scaled up is fast even at 4 MP.
    corners = Image.new("RGB", (2, 2))
    corners.putdata([tuple(digest[i : i + 3]) for i in range(0, 12, 3)])
    img = corners.resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)

    unit = min(width, height)
    for i in range(4):  # a few shapes, so images of one task differ at a glance
        b = digest[12 + i * 5 : 17 + i * 5]
        cx, cy = b[0] / 255 * width, b[1] / 255 * height
        r = unit * (0.08 + b[2] / 255 * 0.2)
        colour = (b[3], b[4], b[2])
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, unit // 120))

    size = max(12, height // 14)
    font = _font(size)
    chars_per_line = max(8, int(width * 0.9 / (size * 0.55)))
    max_lines = max(1, int(height * 0.75 / (size * 1.25)))
    lines = textwrap.wrap(prompt or "(no prompt)", chars_per_line) or ["(no prompt)"]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, chars_per_line - 1)] + "…"
    y = height * 0.08
    for line in lines:
        draw.text(
            (width * 0.05, y), line, font=font, fill="white", stroke_width=max(1, size // 12), stroke_fill="black"
        )
        y += size * 1.25

    small = _font(max(10, height // 36))
    label = f"kling-tui sandbox  image {index + 1}  {width}x{height}"
    draw.text((width * 0.05, height * 0.93), label, font=small, fill="white", stroke_width=1, stroke_fill="black")

    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # speed over size: these are throwaway
    return out.getvalue()


class ImageCache:
    """Rendered PNGs, least recently used dropped first once over `max_bytes`."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, prompt: str, index: int, width: int, height: int) -> bytes:
        key = (prompt, index, width, height)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render_png(prompt, index, width, height)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self._max and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return data
