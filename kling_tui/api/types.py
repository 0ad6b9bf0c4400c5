"""Typed requests and task objects; the bridge between user input and wire JSON."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from kling_tui.api.capabilities import Capabilities, Kind, default_capabilities
from kling_tui.api.errors import InvalidRequest, Problem
from kling_tui.api.validation import (
    IMAGE_MAX_BYTES,
    check_image_bytes,
    unreferenced_inputs,
    validate_expand,
    validate_generation,
    validate_multi_image,
    validate_omni,
)

TaskStatus = Literal["submitted", "processing", "succeed", "failed"]
FINAL_STATUSES = frozenset({"succeed", "failed"})
# Fields of a request that are not parameters of the task: never recorded as params, never sent.
NOT_PARAMS = frozenset({"kind", "parents", "template"})
# Lineage: (local id of the task an input image came from, that image's 1-based index).
Parent = tuple[str, int]


@dataclass(frozen=True)
class TemplateUse:
    """The prompt template a request was filled from, and the value each slot took."""

    body: str
    values: tuple[tuple[str, str], ...]


LOCAL_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class _NotRegular(OSError):
    pass


def _read_regular_file(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of a regular file: a FIFO, a device (/dev/zero) or a
    directory behind an image name would hang or never end, so it is refused unread."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise _NotRegular(_file_kind(mode))
    # O_NONBLOCK: opening a FIFO swapped in after the check must not wait for a writer.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise _NotRegular(_file_kind(mode))
        return handle.read(limit + 1)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_image_source(field_name: str, value: str) -> tuple[str, bytes | None, list[Problem]]:
    """Turn a user's image value into its wire form.

    An http(s) URL is sent as is; anything else is a local file, read, checked and sent as
    base64 without a `data:` prefix. Returns (wire value, raw bytes or None, problems).
    """
    value = value.strip()
    if value.startswith(("http://", "https://")):
        return value, None, []
    path = Path(os.path.expanduser(value))
    if path.suffix.lower() not in LOCAL_IMAGE_SUFFIXES:
        return value, None, [Problem(field_name, "must be a .jpg, .jpeg or .png file or an http(s) URL")]
    try:
        raw = _read_regular_file(path, IMAGE_MAX_BYTES)
    except FileNotFoundError:
        return value, None, [Problem(field_name, f"file not found: {value}")]
    except _NotRegular as exc:
        return value, None, [Problem(field_name, f"must be a regular image file ({value} is {exc})")]
    except OSError as exc:
        return value, None, [Problem(field_name, f"cannot read {value}: {exc.strerror or exc}")]
    if len(raw) > IMAGE_MAX_BYTES:
        size = max(len(raw), path.stat().st_size)
        return value, None, [Problem(field_name, f"image must be at most 10 MB (got {size / 1048576:.1f} MB)")]
    problems = check_image_bytes(field_name, raw)
    return base64.b64encode(raw).decode("ascii"), raw, problems


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.strip() else None
    return value


def _params(request: Any) -> dict[str, Any]:
    data = asdict(request)
    # Each type's own fields first, then the shared ones (as history and the wire always had them).
    keys = [k for k in data if k not in _SHARED] + list(_SHARED)
    cleaned = {k: _clean(data[k]) for k in keys if k not in NOT_PARAMS}
    return {k: v for k, v in cleaned.items() if v is not None}


@dataclass
class _Request:
    """What every request type shares: the fields of every endpoint (keyword-only, after each
    type's own), its recorded parameters, and `build`, which turns them into the wire payload
    and checks it by every rule (the same rules the sandbox applies)."""

    _: KW_ONLY
    callback_url: str | None = None
    external_task_id: str | None = None
    watermark: bool | None = None
    parents: list[Parent] = field(default_factory=list, repr=False)
    template: TemplateUse | None = field(default=None, repr=False)
    # Parameters that go on the wire in another shape (lists of objects, image files read).
    RESHAPED: ClassVar[frozenset[str]] = frozenset()

    def params(self) -> dict[str, Any]:
        """The user-visible parameters (what history records), without empty ones."""
        return _params(self)

    def problems(self, caps: Capabilities | None = None) -> list[Problem]:
        return self.build(caps, raise_on_problems=False)[1]

    def build(
        self, caps: Capabilities | None = None, *, raise_on_problems: bool = True
    ) -> tuple[dict[str, Any], list[Problem]]:
        """The wire payload, checked by every rule; raises InvalidRequest when broken."""
        caps = caps or default_capabilities()
        params = self.params()
        payload: dict[str, Any] = {k: v for k, v in params.items() if k != "watermark" and k not in self.RESHAPED}
        if self.watermark is not None:
            payload["watermark_info"] = {"enabled": self.watermark}
        problems = self._check(payload, params, caps)
        if problems and raise_on_problems:
            raise InvalidRequest(problems)
        return payload, problems

    def _check(self, payload: dict[str, Any], params: dict[str, Any], caps: Capabilities) -> list[Problem]:
        """Complete `payload` (read local images) and return every rule it breaks."""
        raise NotImplementedError


_SHARED = tuple(f.name for f in fields(_Request))


def _one_image(payload: dict[str, Any], validate: Callable[..., list[Problem]]) -> list[Problem]:
    """An `image` field read into the payload, then the endpoint's rules. A bad file is named
    once, and the other fields are still checked (against a stand-in URL)."""
    raw = None
    problems: list[Problem] = []
    if "image" in payload:
        payload["image"], raw, problems = read_image_source("image", payload["image"])
    if not problems:
        return validate(payload, image_bytes=raw)
    return problems + [p for p in validate({**payload, "image": "https://local.invalid/x.png"}) if p.field != "image"]


def _image_list(
    sources: list[str], field_name: str, item_key: str, known: dict[str, bytes], problems: list[Problem]
) -> list[dict[str, str]]:
    """Each source read into `[{item_key: wire}]`; raw bytes go to `known`, file problems to `problems`."""
    items = []
    for i, source in enumerate(sources):
        name = f"{field_name}[{i}]"
        wire, raw, found = read_image_source(name, source)
        problems += found
        if raw is not None:
            known[name] = raw
        items.append({item_key: wire})
    return items


@dataclass
class GenerationRequest(_Request):
    """`POST /v1/images/generations`. `image` is a local path or an http(s) URL."""

    prompt: str
    model_name: str | None = None
    negative_prompt: str | None = None
    image: str | None = None
    image_reference: str | None = None
    image_fidelity: float | None = None
    human_fidelity: float | None = None
    resolution: str | None = None
    n: int | None = None
    aspect_ratio: str | None = None

    kind: Kind = field(default="generation", init=False, repr=False)

    def _check(self, payload: dict[str, Any], params: dict[str, Any], caps: Capabilities) -> list[Problem]:
        return _one_image(payload, lambda p, **kw: validate_generation(p, caps, **kw))


@dataclass
class MultiImageRequest(_Request):
    """`POST /v1/images/multi-image2image`. Images are local paths or http(s) URLs."""

    subject_images: list[str]
    prompt: str | None = None
    model_name: str | None = None
    scene_image: str | None = None
    style_image: str | None = None
    n: int | None = None
    aspect_ratio: str | None = None

    kind: Kind = field(default="multi", init=False, repr=False)
    RESHAPED: ClassVar[frozenset[str]] = frozenset({"subject_images", "scene_image", "style_image"})

    def params(self) -> dict[str, Any]:
        data = _params(self)
        data["subject_images"] = [s for s in self.subject_images if s and s.strip()]
        return data

    def _check(self, payload: dict[str, Any], params: dict[str, Any], caps: Capabilities) -> list[Problem]:
        problems: list[Problem] = []
        known: dict[str, bytes] = {}
        sources = params.get("subject_images", [])
        payload["subject_image_list"] = _image_list(sources, "subject_image_list", "subject_image", known, problems)
        for name in ("scene_image", "style_image"):
            if name in params:
                wire, raw, found = read_image_source(name, params[name])
                problems += found
                payload[name] = wire
                if raw is not None:
                    known[name] = raw
        bad_fields = {p.field for p in problems}
        return problems + [p for p in validate_multi_image(payload, caps, images=known) if p.field not in bad_fields]


@dataclass
class OmniRequest(_Request):
    """`POST /v1/images/omni-image`. `images` are local paths or http(s) URLs, referred to in the
    prompt as <<<image_1>>>, <<<image_2>>> ... in order; `elements` are Kling element ids
    (<<<element_1>>> ...)."""

    prompt: str
    model_name: str | None = None
    images: list[str] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    resolution: str | None = None
    n: int | None = None
    result_type: str | None = None
    series_amount: int | None = None
    aspect_ratio: str | None = None

    kind: Kind = field(default="omni", init=False, repr=False)
    RESHAPED: ClassVar[frozenset[str]] = frozenset({"images", "elements"})

    def params(self) -> dict[str, Any]:
        data = _params(self)
        for name in ("images", "elements"):
            values = [str(v).strip() for v in getattr(self, name) if v is not None and str(v).strip()]
            if values:
                data[name] = values
            else:
                data.pop(name, None)
        return data

    def warnings(self) -> list[str]:
        """What is allowed but probably not meant: inputs the prompt never refers to."""
        params = self.params()
        unused = unreferenced_inputs(self.prompt, len(params.get("images", [])), len(params.get("elements", [])))
        if not unused:
            return []
        return [f"prompt: never refers to {', '.join(unused)} (the model may still use them)"]

    def _check(self, payload: dict[str, Any], params: dict[str, Any], caps: Capabilities) -> list[Problem]:
        problems: list[Problem] = []
        known: dict[str, bytes] = {}
        image_list = _image_list(params.get("images", []), "image_list", "image", known, problems)
        if image_list:
            payload["image_list"] = image_list
        if params.get("elements"):
            payload["element_list"] = [{"element_id": e} for e in params["elements"]]
        bad_fields = {p.field for p in problems}
        return problems + [p for p in validate_omni(payload, caps, images=known) if p.field not in bad_fields]


@dataclass
class ExpandRequest(_Request):
    """`POST /v1/images/editing/expand`. `image` is a local path or an http(s) URL; each ratio
    extends that side by a multiple of the original's width (left/right) or height (up/down).
    It takes no model: `build` accepts `caps` only for a uniform call."""

    image: str
    up_expansion_ratio: float = 0.0
    down_expansion_ratio: float = 0.0
    left_expansion_ratio: float = 0.0
    right_expansion_ratio: float = 0.0
    prompt: str | None = None
    n: int | None = None

    kind: Kind = field(default="expand", init=False, repr=False)

    def _check(self, payload: dict[str, Any], params: dict[str, Any], caps: Capabilities) -> list[Problem]:
        return _one_image(payload, validate_expand)


Request = GenerationRequest | MultiImageRequest | OmniRequest | ExpandRequest
REQUEST_TYPES: dict[str, type[Request]] = {
    "generation": GenerationRequest,
    "multi": MultiImageRequest,
    "omni": OmniRequest,
    "expand": ExpandRequest,
}


def request_from_params(kind: str, params: Mapping[str, Any]) -> Request:
    """Rebuild a request from recorded parameters (history, the CLI, the form)."""
    cls = REQUEST_TYPES.get(kind, GenerationRequest)
    names = {f for f in cls.__dataclass_fields__ if f not in NOT_PARAMS}
    return cls(**{k: v for k, v in params.items() if k in names})


@dataclass(frozen=True)
class TaskImage:
    index: int
    url: str
    watermark_url: str | None = None


@dataclass
class Task:
    """A task object as the service returns it; every field but id and status optional."""

    task_id: str
    task_status: str
    task_status_msg: str = ""
    created_at: int | None = None
    updated_at: int | None = None
    final_unit_deduction: str | None = None
    images: list[TaskImage] = field(default_factory=list)
    external_task_id: str | None = None
    result_type: str | None = None  # omni-image: "single" or "series"

    @property
    def is_final(self) -> bool:
        return self.task_status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Task:
        # Server data: any field but task_id may be missing or of the wrong shape.
        result = data.get("task_result")
        raw_images = result.get("images") if isinstance(result, Mapping) else None
        images = []
        for i, item in enumerate(raw_images if isinstance(raw_images, list) else []):
            if isinstance(item, Mapping) and isinstance(item.get("url"), str):
                index = _int_or_none(item.get("index"))
                images.append(
                    TaskImage(
                        index=i if index is None else index,
                        url=item["url"],
                        watermark_url=item.get("watermark_url") if isinstance(item.get("watermark_url"), str) else None,
                    )
                )
        info = data.get("task_info")
        external = info.get("external_task_id") if isinstance(info, Mapping) else None
        deduction = data.get("final_unit_deduction")
        # Where Kling puts result_type is not documented: in task_result, else beside it.
        result_type = result.get("result_type") if isinstance(result, Mapping) else None
        if not isinstance(result_type, str):
            result_type = data.get("result_type")
        return cls(
            task_id=str(data["task_id"]),
            task_status=str(data.get("task_status") or "submitted"),
            task_status_msg=str(data.get("task_status_msg") or ""),
            created_at=_int_or_none(data.get("created_at")),
            updated_at=_int_or_none(data.get("updated_at")),
            final_unit_deduction=str(deduction) if deduction not in (None, "") else None,
            images=images,
            external_task_id=external if isinstance(external, str) and external else None,
            result_type=result_type if isinstance(result_type, str) and result_type else None,
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ResourcePack:
    name: str
    total: float
    remaining: float
    status: str
    effective_time: int | None = None
    invalid_time: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourcePack:
        return cls(
            name=str(data.get("resource_pack_name", "")),
            total=float(data.get("total_quantity") or 0),
            remaining=float(data.get("remaining_quantity") or 0),
            status=str(data.get("status", "")),
            effective_time=data.get("effective_time"),
            invalid_time=data.get("invalid_time"),
        )
