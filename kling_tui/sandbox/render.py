"""Result images: real PNGs drawn from the prompt, the same bytes for the same inputs."""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

MEGAPIXELS = {"1k": 1024 * 1024, "2k": 2048 * 2048, "4k": 4096 * 4096}


@dataclass(frozen=True)
class Look:
    """How a result derives from its inputs, beyond the prompt.

    mode: "plain" (drawn from the prompt), "edit" (the first input image restyled),
    "series" (one palette for the whole set, numbered k/N), "expand" (the original placed
    at `box` = (x, y, width, height) inside a new canvas). `source` is the input image's
    bytes, or None when it was a URL (the sandbox never fetches one).
    """

    mode: str = "plain"
    source: bytes | None = None
    total: int = 1
    box: tuple[int, int, int, int] | None = None


PLAIN = Look()


def _round8(value: float) -> int:
    return max(8, round(value / 8) * 8)


def output_size(aspect_ratio: str | None, resolution: str | None) -> tuple[int, int]:
    """Width and height for an aspect ratio like "16:9" at 1k (~1 MP), 2k (~4 MP) or 4k (~16 MP)."""
    try:
        w_part, h_part = (aspect_ratio or "16:9").split(":")
        ratio = float(w_part) / float(h_part)
    except (ValueError, ZeroDivisionError):
        ratio = 16 / 9
    return size_for_ratio(ratio, resolution)


def size_for_ratio(ratio: float, resolution: str | None) -> tuple[int, int]:
    """Width and height of about the resolution's area with width / height = `ratio`."""
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


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).digest()


def _gradient(digest: bytes, width: int, height: int):
    from PIL import Image

    # A smooth four-colour gradient: a 2x2 image scaled up is fast even at 4 MP.
    corners = Image.new("RGB", (2, 2))
    corners.putdata([tuple(digest[i : i + 3]) for i in range(0, 12, 3)])
    return corners.resize((width, height), Image.Resampling.BICUBIC)


def _shapes(img, digest: bytes) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    width, height = img.size
    unit = min(width, height)
    for i in range(4):  # a few shapes, so images of one task differ at a glance
        b = digest[12 + i * 5 : 17 + i * 5]
        cx, cy = b[0] / 255 * width, b[1] / 255 * height
        r = unit * (0.08 + b[2] / 255 * 0.2)
        colour = (b[3], b[4], b[2])
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=max(2, unit // 120))


def _caption(img, prompt: str, label: str) -> None:
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    width, height = img.size
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
    draw.text((width * 0.05, height * 0.93), label, font=small, fill="white", stroke_width=1, stroke_fill="black")


def _png(img) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # speed over size: these are throwaway
    return out.getvalue()


def render_png(prompt: str, index: int, width: int, height: int) -> bytes:
    digest = _digest(prompt, index, f"{width}x{height}")
    img = _gradient(digest, width, height)
    _shapes(img, digest)
    _caption(img, prompt, f"kling-tui sandbox  image {index + 1}  {width}x{height}")
    return _png(img)


def _source_image(look: Look, width: int, height: int):
    """The input image, or a grey stand-in when it was a URL (or unreadable)."""
    from PIL import Image, ImageDraw, UnidentifiedImageError

    if look.source is not None:
        try:
            with Image.open(io.BytesIO(look.source)) as opened:
                return opened.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            pass
    img = Image.new("RGB", (width, height), (128, 128, 128))
    ImageDraw.Draw(img).text((8, 8), "input image (URL: not fetched)", font=_font(max(10, height // 20)), fill="white")
    return img


def _restyled(look: Look, digest: bytes, width: int, height: int):
    """The first input, posterized and tinted with the prompt's colour: visibly the same picture, edited."""
    from PIL import Image, ImageOps

    base = _source_image(look, width, height)
    base = ImageOps.posterize(base, 3)
    tint = Image.new("RGB", (width, height), tuple(digest[0:3]))
    return Image.blend(base, tint, 0.35)


def _series_mark(img, number: int, total: int, digest: bytes) -> None:
    """A big "k/N" and a strip of the set's palette along the bottom edge."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(img)
    width, height = img.size
    text = f"{number}/{total}"
    font = _font(max(24, height // 4))
    box = draw.textbbox((0, 0), text, font=font)
    x = (width - (box[2] - box[0])) / 2
    y = (height - (box[3] - box[1])) / 2
    draw.text((x, y), text, font=font, fill="white", stroke_width=max(2, height // 120), stroke_fill="black")
    strip = max(6, height // 40)
    for k in range(total):
        colour = tuple(digest[(3 * k) % 30 : (3 * k) % 30 + 3])
        x0 = width * k / total
        draw.rectangle((x0, height - strip, width * (k + 1) / total, height), fill=colour)
    draw.rectangle(
        (width * (number - 1) / total, height - 2 * strip, width * number / total, height - strip), fill="white"
    )


def _expanded(prompt: str, look: Look, digest: bytes, width: int, height: int):
    """A hatched new canvas with the original pasted, outlined, where it belongs."""
    from PIL import Image, ImageDraw

    canvas = _gradient(digest, width, height)
    canvas = Image.blend(canvas, Image.new("RGB", (width, height), (40, 40, 40)), 0.55)
    draw = ImageDraw.Draw(canvas)
    step = max(16, min(width, height) // 24)
    for x in range(-height, width, step):
        draw.line((x, 0, x + height, height), fill=(90, 90, 90), width=max(1, step // 6))
    x, y, w, h = look.box or (0, 0, width, height)
    canvas.paste(_source_image(look, w, h), (x, y))
    draw.rectangle((x, y, x + w - 1, y + h - 1), outline=(255, 220, 0), width=max(2, min(width, height) // 200))
    return canvas


def render(prompt: str, index: int, width: int, height: int, look: Look = PLAIN) -> bytes:
    """A result image: `look` says how it derives from the task's inputs."""
    size = f"{width}x{height}"
    if look.mode == "plain":
        return render_png(prompt, index, width, height)
    if look.mode == "expand":
        img = _expanded(prompt, look, _digest(prompt, index, size), width, height)
        x, y, w, h = look.box or (0, 0, width, height)
        label = f"kling-tui sandbox  expanded  image {index + 1}  {size}, original {w}x{h} at {x},{y}"
        _caption(img, prompt or "", label)
        return _png(img)
    if look.mode == "series":
        digest = _digest(prompt, size)  # one palette for the whole set
        img = _restyled(look, digest, width, height) if look.source else _gradient(digest, width, height)
        _shapes(img, _digest(prompt, index, size))
        _caption(img, prompt, f"kling-tui sandbox  series  image {index + 1} of {look.total}  {size}")
        _series_mark(img, index + 1, look.total, digest)
        return _png(img)
    digest = _digest(prompt, index, size)
    img = _restyled(look, digest, width, height)
    _caption(img, prompt, f"kling-tui sandbox  edit of <<<image_1>>>  image {index + 1}  {size}")
    return _png(img)


class ImageCache:
    """Rendered PNGs, least recently used dropped first once over `max_bytes`."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self._lock = threading.Lock()

    def get(self, prompt: str, index: int, width: int, height: int, look: Look = PLAIN) -> bytes:
        key = (prompt, index, width, height, look)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render(prompt, index, width, height, look)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self._max and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return data
