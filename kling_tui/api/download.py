"""Saving result images: streamed, size-capped, checked to be a real image, written atomically.

Result URLs come from the server, so they are untrusted: only http(s) (also after a
redirect), at most `max_bytes`, only image formats Pillow can read within a pixel limit,
and a file name that cannot leave the destination folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path

import httpx

from kling_tui.api.errors import KlingError

MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
# The whole download ends within this, however slowly the server trickles its bytes.
DEFAULT_DEADLINE = 120.0
# Kling's largest outputs are a few megapixels; anything far beyond is a decompression bomb.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
MAX_REDIRECTS = 5
MAX_NAME_CHARS = 150
MAX_NAME_BYTES = 200  # room below 255 for a suffix added later
ALLOWED_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
FORMAT_SUFFIXES = {"PNG": (".png",), "JPEG": (".jpg", ".jpeg"), "WEBP": (".webp",)}
_UNSAFE_CHARS = re.compile(r'[/\\<>:"|?*]')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_CHUNK = 64 * 1024


class DownloadError(KlingError):
    """An image could not be saved; `retryable` says whether trying again may help."""


def _neutralise(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    # Control and format characters (newlines, escapes, bidi overrides) never belong in a name.
    text = "".join("_" if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in text)
    text = _UNSAFE_CHARS.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip()
    # Leading dots make hidden files and "..": drop them; trailing dots and spaces trouble Windows.
    text = text.lstrip(".").rstrip(". ")
    if len(text) > MAX_NAME_CHARS or len(text.encode()) > MAX_NAME_BYTES:
        stem, dot, suffix = text.rpartition(".")
        tail = "." + suffix if dot and 0 < len(suffix) <= 8 else ""
        stem = (stem if tail else text)[: MAX_NAME_CHARS - len(tail)]
        # File systems limit names in bytes (255 on most): wide characters count several.
        while len((stem + tail).encode()) > MAX_NAME_BYTES:
            stem = stem[:-1]
        text = stem.rstrip(". ") + tail
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    return text if text.strip("_ ") else ""


def safe_filename(text: str, default: str = "image") -> str:
    """A single path component made from `text`: no separators, no "..", no control
    characters, not hidden, not too long; `default` when nothing usable is left."""
    return _neutralise(text or "") or _neutralise(default) or "image"


def _check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise DownloadError(f"not a valid URL: {url!r}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DownloadError(f"only http(s) URLs can be downloaded (got {parsed.scheme or 'no'} scheme)")
    return parsed


def _destination(dest_dir: Path, filename: str) -> Path:
    name = safe_filename(filename)
    root = dest_dir.resolve()
    # Not resolved itself: a symlink at that name is replaced by the rename, never written through.
    path = root / name
    if path.parent != root:
        raise DownloadError(f"refusing to write outside {root}: {filename!r}")
    return path


def _check_image(path: Path, max_pixels: int) -> str:
    """The image's format, after making sure Pillow reads it as a whole, within `max_pixels`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            fmt = img.format or ""
            width, height = img.size
            if fmt not in ALLOWED_FORMATS:
                raise DownloadError(f"not a PNG, JPEG or WebP image (got {fmt or 'unknown'})")
            if width * height > max_pixels:
                raise DownloadError(f"image too large to open safely: {width}x{height} pixels")
            img.verify()
    except DownloadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise DownloadError("the downloaded file is not an image") from None
    except (OSError, ValueError, SyntaxError):
        raise DownloadError("the downloaded image is damaged or cut short") from None
    return fmt


def _with_suffix(path: Path, fmt: str) -> Path:
    if path.suffix.lower() in FORMAT_SUFFIXES[fmt]:
        return path
    return path.with_name(path.name + ALLOWED_FORMATS[fmt])


async def download_image(
    http: httpx.AsyncClient,
    url: str,
    dest_dir: str | os.PathLike[str],
    filename: str,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    deadline: float = DEFAULT_DEADLINE,
) -> Path:
    """Save the image at `url` as `dest_dir/filename` and return the path.

    The suffix is set from the real format when it does not match (".png" for a PNG). An
    existing file of the same name is replaced atomically, so re-downloading is idempotent.
    """
    current = _check_url(url)
    folder = Path(dest_dir)
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    target = _destination(folder, filename)
    fd, tmp_name = tempfile.mkstemp(prefix=".", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                async with asyncio.timeout(deadline):
                    await _fetch(http, current, out, max_bytes)
            except TimeoutError:
                raise DownloadError(f"the download did not finish within {deadline:g} s", retryable=True) from None
        fmt = await asyncio.to_thread(_check_image, tmp, max_pixels)
        final = _with_suffix(target, fmt)
        await asyncio.to_thread(os.replace, tmp, final)
        return final
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


async def _fetch(http: httpx.AsyncClient, url: httpx.URL, out, max_bytes: int) -> None:
    for _ in range(MAX_REDIRECTS + 1):
        try:
            async with http.stream("GET", url, follow_redirects=False) as response:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    url = _check_url(str(url.join(location)))
                    continue
                if response.status_code != 200:
                    gone = response.status_code in (404, 410)
                    reason = (
                        "the image no longer exists (result URLs expire after 30 days)" if gone else "download failed"
                    )
                    raise DownloadError(
                        f"{reason}: HTTP {response.status_code}",
                        http_status=response.status_code,
                        retryable=response.status_code >= 500 or response.status_code == 429,
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise DownloadError(f"image larger than the {max_bytes} byte limit ({declared} bytes)")
                received = 0
                async for chunk in response.aiter_bytes(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise DownloadError(f"image larger than the {max_bytes} byte limit")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
                return
        except httpx.InvalidURL:
            # httpx parses a redirect's Location even when not following it.
            raise DownloadError("the server redirected to an invalid URL") from None
        except httpx.TimeoutException:
            raise DownloadError("timed out downloading the image", retryable=True) from None
        except httpx.TransportError as exc:
            raise DownloadError(f"network error downloading the image: {type(exc).__name__}", retryable=True) from None
    raise DownloadError(f"too many redirects (more than {MAX_REDIRECTS})")
