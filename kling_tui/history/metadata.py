"""How an image was made, kept inside the image file itself.

PNG: an iTXt chunk named "kling-tui" holding JSON (Pillow's PngInfo). JPEG and WebP: the
same JSON in EXIF UserComment, inserted with piexif without re-encoding the picture.

The JSON is built from the task record alone and is generic over its kind: every request
field is kept, except credentials (dropped) and inline image data (replaced by a note);
local reference images are kept by file name only, URLs as they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from kling_tui.base.atomic import write_atomic

if TYPE_CHECKING:
    from kling_tui.history.store import TaskRecord

__all__ = [
    "METADATA_KEY",
    "ImageParameters",
    "MetadataError",
    "embed_parameters",
    "image_parameters",
    "keep_parameters",
    "parameters_for",
    "read_parameters",
    "resolve_references",
    "sanitize_params",
]

METADATA_KEY = "kling-tui"
FORMAT_VERSION = 1
# Record fields that say nothing about how the image was made, or that are the user's own.
_SKIPPED_FIELDS = frozenset(
    {"params", "image_urls", "image_paths", "status_msg", "queue_position", "note", "starred", "error_code"}
)
_CREDENTIAL_KEYS = frozenset(
    {"access_key", "secret_key", "api_key", "token", "jwt", "authorization", "password", "secret"}
)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
_BASE64_MIN_CHARS = 200
_EXIF_USER_COMMENT = 0x9286
log = logging.getLogger(__name__)


class MetadataError(Exception):
    """The file cannot be read as an image (missing, damaged, not an image)."""


@dataclasses.dataclass(frozen=True)
class ImageParameters:
    """What `read_parameters` found: the task's kind and request fields, and the rest as stored."""

    kind: str
    params: dict[str, Any]
    data: dict[str, Any]

    @property
    def prompt(self) -> str:
        value = self.params.get("prompt")
        return value if isinstance(value, str) else ""


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _clean_value(key: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        return sanitize_params(value)
    if isinstance(value, (list, tuple)):
        return [_clean_value(key, item) for item in value]
    if not isinstance(value, str):
        return value
    if value.startswith("data:"):
        return "(inline image data omitted)"
    if len(value) >= _BASE64_MIN_CHARS and _BASE64.fullmatch(value) and " " not in value.strip():
        return f"(base64 image data omitted, {len(value)} characters)"
    if "prompt" not in key and not _is_url(value) and value.lower().endswith(_IMAGE_SUFFIXES):
        # A local reference image: its name says which one; its folder says who the user is.
        return PurePath(value.replace("\\", "/")).name
    return value


def sanitize_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields fit to travel with an image: no credentials, no inline image data,
    local files by name."""
    return {
        str(k): _clean_value(str(k), v)
        for k, v in params.items()
        if v is not None and str(k).lower() not in _CREDENTIAL_KEYS
    }


def resolve_references(params: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """`params` with every bare image file name that exists in `folder` made a full path there.

    Images travel with their references by name; a reference kept beside the image is found again.
    """

    def resolve(key: str, value: Any) -> Any:
        if isinstance(value, list):
            return [resolve(key, item) for item in value]
        if (
            isinstance(value, str)
            and "prompt" not in key
            and value.lower().endswith(_IMAGE_SUFFIXES)
            and "/" not in value
            and "\\" not in value
            and (folder / value).is_file()
        ):
            return str(folder / value)
        return value

    return {str(k): resolve(str(k), v) for k, v in params.items()}


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _endpoint(kind: str) -> str | None:
    from kling_tui.api.client import PATHS

    return PATHS.get(kind)


def parameters_for(record: TaskRecord, index: int | None = None) -> dict[str, Any]:
    """The JSON kept in image `index` (0-based) of `record`."""
    data: dict[str, Any] = {"kling_tui": FORMAT_VERSION, "kind": record.kind, "endpoint": _endpoint(record.kind)}
    for item in dataclasses.fields(record):
        if item.name in _SKIPPED_FIELDS or item.name == "kind":
            continue
        value = getattr(record, item.name)
        if value is None or value == "":
            continue
        if item.name.endswith("_at") and isinstance(value, (int, float)):
            value = _iso(value)
        data[item.name] = value
    if index is not None:
        data["image_index"] = index + 1
    data["params"] = sanitize_params(record.params)
    return data


def _png_bytes(path: Path, text: str) -> bytes:
    from PIL import Image, PngImagePlugin

    with Image.open(path) as img:
        img.load()
        info = PngImagePlugin.PngInfo()
        for key, value in img.info.items():
            # Keep the file's other text chunks; ours is replaced.
            if isinstance(key, str) and isinstance(value, str) and key != METADATA_KEY:
                info.add_itxt(key, value)
        info.add_itxt(METADATA_KEY, text)
        out = io.BytesIO()
        extra = {"icc_profile": img.info["icc_profile"]} if img.info.get("icc_profile") else {}
        img.save(out, format="PNG", pnginfo=info, **extra)
    return out.getvalue()


def _exif_bytes(path: Path, text: str) -> bytes:
    import piexif
    import piexif.helper

    raw = path.read_bytes()
    try:
        exif = piexif.load(raw)
    except Exception:  # no or unreadable EXIF: start afresh
        exif = {"0th": {}, "Exif": {}, "GPS": {}, "1st": {}, "thumbnail": None}
    exif.setdefault("Exif", {})[_EXIF_USER_COMMENT] = piexif.helper.UserComment.dump(text, encoding="unicode")
    exif.setdefault("0th", {})[piexif.ImageIFD.Software] = b"kling-tui"
    out = io.BytesIO()
    piexif.insert(piexif.dump(exif), raw, out)
    return out.getvalue()


def embed_parameters(path: Path, record: TaskRecord, index: int | None = None) -> None:
    """Write how image `index` of `record` was made into the file at `path` (atomically).

    Raises MetadataError for a file that is not a PNG, JPEG or WebP image.
    """
    from PIL import Image, UnidentifiedImageError

    text = json.dumps(parameters_for(record, index), ensure_ascii=False, default=str)
    try:
        with Image.open(path) as img:
            fmt = img.format
        if fmt == "PNG":
            data = _png_bytes(path, text)
        elif fmt in ("JPEG", "WEBP"):
            data = _exif_bytes(path, text)
        else:
            raise MetadataError(f"{path.name}: cannot keep parameters in a {fmt or 'unknown'} file")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MetadataError(f"{path.name}: {exc}") from None
    write_atomic(path, data, mode=path.stat().st_mode & 0o777)


def keep_parameters(path: Path, record: TaskRecord, index: int | None = None) -> bool:
    """`embed_parameters` for the download path: a failure is logged, and the image stays as it was."""
    try:
        embed_parameters(path, record, index)
    except (MetadataError, OSError) as exc:
        log.warning("parameters not kept in %s: %s", path.name, exc)
        return False
    return True


def _read_exif_comment(img: Any) -> str | None:
    import piexif.helper

    exif = img.getexif().get_ifd(0x8769)  # the Exif sub-IFD
    value = exif.get(_EXIF_USER_COMMENT)
    if not isinstance(value, bytes):
        return None
    try:
        return str(piexif.helper.UserComment.load(value))
    except Exception:
        return None


def image_parameters(data: Any) -> ImageParameters | None:
    """Our parameters from a decoded JSON value; None when it is not ours."""
    if not isinstance(data, dict) or not isinstance(data.get("kling_tui"), int):
        return None
    kind = data.get("kind")
    params = data.get("params")
    if not isinstance(kind, str) or not isinstance(params, dict):
        return None
    return ImageParameters(kind=kind, params=params, data=data)


def read_parameters(path: Path) -> ImageParameters | None:
    """The parameters kling-tui kept in an image, or None for an image it did not make.

    Reads the header only (never decodes the pixels). Raises MetadataError when the file
    cannot be read as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.format == "PNG":
                text = img.info.get(METADATA_KEY)  # chunks before the pixels: no decode
            elif img.format in ("JPEG", "WEBP", "MPO"):
                text = _read_exif_comment(img)
            else:
                text = None
    except FileNotFoundError:
        raise MetadataError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise MetadataError(f"{path} is a folder, not an image") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise MetadataError(f"{path.name} is not an image kling-tui can read ({exc})") from None
    if not isinstance(text, str):
        return None
    try:
        return image_parameters(json.loads(text))
    except ValueError:
        return None
