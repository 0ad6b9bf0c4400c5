"""Small copies of saved images, decoded within a memory budget and cached on disk.

A thumbnail of `<task>/image-1.png` at 256 px is `<task>/.thumbs/image-1.256.png`; it is made
once (and again only when the image is newer), so a grid of nine draws from nine small files.
Decoding a huge image is what costs memory: JPEGs are decoded at a reduced scale
(`Image.draft`), other formats are shrunk in their own mode before any conversion, and images
above `MAX_PREVIEW_PIXELS` are refused with a message instead of decoded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from kling_tui.base.atomic import write_atomic

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "MAX_PREVIEW_PIXELS",
    "THUMBS_DIR",
    "TooLarge",
    "cached_thumbnail",
    "has_thumbnail",
    "load_small",
    "thumbnail_path",
]

THUMBS_DIR = ".thumbs"
# The download limit (api/download.py): nothing kling-tui saves is larger; a bigger file came
# from elsewhere and would cost gigabytes to decode.
MAX_PREVIEW_PIXELS = 64 * 1024 * 1024


class TooLarge(ValueError):
    """An image with more pixels than a preview may decode."""


def load_small(path: Path, max_side: int, *, max_pixels: int = MAX_PREVIEW_PIXELS) -> PILImage:
    """`path` decoded to at most `max_side` px a side, as RGB or RGBA (blocking: call from a thread)."""
    from PIL import Image

    with Image.open(path) as img:
        width, height = img.size
        if width * height > max_pixels:
            raise TooLarge(
                f"{path.name} is too large to preview ({width}x{height} px; the limit is "
                f"{max_pixels / 1e6:.0f} Mpx). Open it in a viewer with o."
            )
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
        picture: Image.Image = img
        if img.mode not in ("RGB", "RGBA", "L", "LA"):
            picture = img.convert("RGBA" if img.mode in ("P", "PA") and "transparency" in img.info else "RGB")
        # Shrink in place, convert after: a full-size copy or conversion would double the memory.
        picture.thumbnail((max_side, max_side), reducing_gap=2.0)
        small = picture.convert("RGBA" if "A" in picture.mode else "RGB")
    return small


def thumbnail_path(image: Path, size: int) -> Path:
    return image.parent / THUMBS_DIR / f"{image.stem}.{size}.png"


def has_thumbnail(image: Path, size: int) -> bool:
    """Whether an up-to-date thumbnail is on disk (so that reading it costs next to nothing)."""
    try:
        return thumbnail_path(image, size).stat().st_mtime >= image.stat().st_mtime
    except OSError:
        return False


def cached_thumbnail(image: Path, size: int) -> PILImage:
    """The thumbnail of `image` at `size` px, from the disk cache or made and stored there.

    A folder that cannot be written only costs the cache, never the thumbnail.
    """
    from PIL import Image

    thumb = thumbnail_path(image, size)
    try:
        if thumb.stat().st_mtime >= image.stat().st_mtime:
            with Image.open(thumb) as cached:
                cached.load()
                return cached
    except (OSError, ValueError, SyntaxError):
        pass  # missing, stale or damaged: make it again
    small = load_small(image, size)
    try:
        buffer = io.BytesIO()
        small.save(buffer, "PNG", compress_level=1)
        thumb.parent.mkdir(exist_ok=True)
        write_atomic(thumb, buffer.getvalue(), mode=0o644, durable=False)
    except OSError:
        pass
    return small
