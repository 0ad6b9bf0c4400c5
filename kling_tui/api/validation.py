"""The spec's request rules, applied to wire payloads.

One source of truth: the client checks a payload with these functions before sending it,
and the sandbox checks what it receives with the same functions. Every rule reads the
capability table; each failure is a `Problem` naming the field and the rule.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from kling_tui.api.capabilities import (
    GENERATIONS,
    MULTI_IMAGE,
    OMNI_IMAGE,
    REFERENCE_TYPES,
    Capabilities,
    ModelCaps,
    default_capabilities,
)
from kling_tui.api.errors import Problem

PROMPT_MAX = 2500
N_MIN, N_MAX = 1, 9
IMAGE_MAX_BYTES = 10 * 1024 * 1024
IMAGE_MIN_SIDE = 300
IMAGE_MAX_RATIO = 2.5
IMAGE_FORMATS = ("JPEG", "PNG")
SUBJECTS_MIN, SUBJECTS_MAX = 1, 4
EXTERNAL_ID_MAX = 64
OMNI_INPUTS_MAX = 10  # image_list + element_list
RESULT_TYPES = ("single", "series")
SERIES_MIN, SERIES_MAX, SERIES_DEFAULT = 2, 9, 4
EXPAND_SIDES = ("up", "down", "left", "right")
EXPAND_RATIO_MAX = 2.0
EXPAND_AREA_MAX = 3.0
REFERENCE_RE = re.compile(r"<<<(image|element)_(\d+)>>>")

SHAPE, VALUE, MISSING_MODEL = 1200, 1201, 1203


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the image header, or None when not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return (img.format or "", img.width, img.height)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def check_image_bytes(field: str, data: bytes) -> list[Problem]:
    """The rules on a reference image's content: format, size, dimensions, ratio."""
    if len(data) > IMAGE_MAX_BYTES:
        return [Problem(field, f"image must be at most 10 MB (got {len(data) / 1048576:.1f} MB)")]
    info = image_size(data)
    if info is None or info[0] not in IMAGE_FORMATS:
        return [Problem(field, "image must be a JPG or PNG")]
    _, w, h = info
    problems = []
    if min(w, h) < IMAGE_MIN_SIDE:
        problems.append(Problem(field, f"image must be at least {IMAGE_MIN_SIDE} px on each side (got {w}x{h})"))
    if max(w / h, h / w) > IMAGE_MAX_RATIO:
        problems.append(Problem(field, f"image aspect ratio must be within 1:2.5..2.5:1 (got {w}x{h})"))
    return problems


def decode_image_field(value: str) -> bytes | None:
    """The bytes of a base64 image value, or None when it is not valid base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def check_image_value(field: str, value: Any, raw: bytes | None = None) -> list[Problem]:
    """An `image`-like field: an http(s) URL, or raw base64 (no data: prefix) of a JPG/PNG.

    `raw` is the already-known decoded content (the client has it), to skip decoding.
    """
    if not isinstance(value, str) or not value:
        return [Problem(field, "must be an http(s) URL or base64 image data", SHAPE)]
    if raw is None:
        if value.startswith(("http://", "https://")):
            return [] if is_http_url(value) else [Problem(field, "is not a valid http(s) URL")]
        if value.startswith("data:"):
            return [Problem(field, "base64 image must be sent without a 'data:' prefix")]
        raw = decode_image_field(value)
        if raw is None:
            return [Problem(field, "must be an http(s) URL or base64 image data")]
    return check_image_bytes(field, raw)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_text(payload: Mapping[str, Any], field: str, *, required: bool) -> list[Problem]:
    value = payload.get(field)
    if value is None:
        return [Problem(field, "is required", SHAPE)] if required else []
    if not isinstance(value, str):
        return [Problem(field, "must be a string", SHAPE)]
    if required and not value.strip():
        return [Problem(field, "is required")]
    if len(value) > PROMPT_MAX:
        return [Problem(field, f"must be at most {PROMPT_MAX} characters (got {len(value)})")]
    return []


def _check_common(payload: Mapping[str, Any], model: ModelCaps | None) -> list[Problem]:
    """Rules shared by both create endpoints: n, aspect_ratio, callback, ids, watermark."""
    problems: list[Problem] = []
    n = payload.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool):
            problems.append(Problem("n", f"must be an integer from {N_MIN} to {N_MAX}", SHAPE))
        elif not N_MIN <= n <= N_MAX:
            problems.append(Problem("n", f"must be from {N_MIN} to {N_MAX} (got {n})"))
    ratio = payload.get("aspect_ratio")
    if ratio is not None and model is not None and (not isinstance(ratio, str) or ratio not in model.aspect_ratios):
        problems.append(
            Problem("aspect_ratio", f"{model.name} supports {', '.join(model.aspect_ratios)} (got {ratio!r})")
        )
    callback = payload.get("callback_url")
    if callback is not None and (not isinstance(callback, str) or not is_http_url(callback)):
        problems.append(Problem("callback_url", "must be an http(s) URL"))
    ext = payload.get("external_task_id")
    if ext is not None:
        if not isinstance(ext, str) or not ext.strip():
            problems.append(Problem("external_task_id", "must be a non-empty string", SHAPE))
        elif len(ext) > EXTERNAL_ID_MAX:
            problems.append(Problem("external_task_id", f"must be at most {EXTERNAL_ID_MAX} characters"))
    watermark = payload.get("watermark_info")
    if watermark is not None and not (isinstance(watermark, Mapping) and isinstance(watermark.get("enabled"), bool)):
        problems.append(Problem("watermark_info", 'must be {"enabled": true|false}', SHAPE))
    return problems


def _resolve_model(
    payload: Mapping[str, Any], caps: Capabilities, default: str, endpoint: str | None = GENERATIONS
) -> tuple[ModelCaps | None, list[Problem]]:
    name = payload.get("model_name", default)
    if name is None:
        name = default
    if not isinstance(name, str):
        return None, [Problem("model_name", "must be a string", SHAPE)]
    model = caps.get(name)
    if model is None:
        known = ", ".join(caps.names)
        return None, [Problem("model_name", f"unknown model {name!r} (known: {known})", MISSING_MODEL)]
    if model.discontinued:
        return None, [Problem("model_name", f"The model '{name}' has been discontinued", MISSING_MODEL)]
    if endpoint is not None and not model.serves(endpoint):
        served = ", ".join(caps.models_for(endpoint)) or "no model"
        return None, [Problem("model_name", f"/v1/images/{endpoint} serves {served} (not {name})")]
    return model, []


def validate_generation(
    payload: Any, caps: Capabilities | None = None, *, image_bytes: bytes | None = None
) -> list[Problem]:
    """Every rule for `POST /v1/images/generations`; an empty list means valid."""
    caps = caps or default_capabilities()
    if not isinstance(payload, Mapping):
        return [Problem("body", "must be a JSON object", SHAPE)]
    model, problems = _resolve_model(payload, caps, caps.default_model)
    problems += _check_text(payload, "prompt", required=True)
    problems += _check_text(payload, "negative_prompt", required=False)
    problems += _check_common(payload, model)

    image = payload.get("image")
    has_image = image is not None and image != ""
    reference = payload.get("image_reference")
    if has_image:
        problems += check_image_value("image", image, image_bytes)
    if payload.get("negative_prompt") and has_image:
        problems.append(Problem("negative_prompt", "cannot be used together with a reference image"))

    for field in ("image_fidelity", "human_fidelity"):
        value = payload.get(field)
        if value is None:
            continue
        if not _is_number(value):
            problems.append(Problem(field, "must be a number from 0 to 1", SHAPE))
        elif not 0 <= value <= 1:
            problems.append(Problem(field, f"must be from 0 to 1 (got {value})"))
    if payload.get("image_fidelity") is not None and not has_image:
        problems.append(Problem("image_fidelity", "applies only with an image"))
    if payload.get("human_fidelity") is not None and reference != "subject":
        problems.append(Problem("human_fidelity", "applies only with image_reference 'subject'"))

    if reference is not None:
        if reference not in REFERENCE_TYPES:
            problems.append(Problem("image_reference", f"must be 'subject' or 'face' (got {reference!r})"))
        elif not has_image:
            problems.append(Problem("image_reference", "requires an image"))
        elif model is not None and reference not in model.reference_types:
            models = [m.name for m in caps.models.values() if reference in m.reference_types]
            problems.append(
                Problem("image_reference", f"is supported only on {', '.join(models) or 'no model'} (not {model.name})")
            )

    resolution = payload.get("resolution")
    if resolution is not None and resolution not in ("1k", "2k"):
        problems.append(Problem("resolution", f"must be '1k' or '2k' (got {resolution!r})"))
        resolution = None

    if model is not None:
        if not has_image and not model.text_to_image:
            problems.append(Problem("image", f"{model.name} has no text-to-image: an image is required"))
        if has_image:
            if not model.accepts_image:
                problems.append(Problem("image", f"{model.name} does not take a reference image"))
            elif model.requires_reference and reference is None:
                problems.append(
                    Problem("image_reference", f"is required for {model.name} when an image is given (subject or face)")
                )
            if resolution is not None and resolution not in model.image_resolutions:
                problems.append(
                    Problem("resolution", f"{resolution} is not available for image-to-image on {model.name}")
                )
        elif resolution is not None and resolution not in model.resolutions:
            problems.append(
                Problem("resolution", f"{model.name} supports {', '.join(model.resolutions)} (got {resolution})")
            )
    return problems


def validate_multi_image(
    payload: Any, caps: Capabilities | None = None, *, images: Mapping[str, bytes] | None = None
) -> list[Problem]:
    """Every rule for `POST /v1/images/multi-image2image`; an empty list means valid.

    `images` maps field paths (e.g. `subject_image_list[0]`) to content already known.
    """
    caps = caps or default_capabilities()
    images = images or {}
    if not isinstance(payload, Mapping):
        return [Problem("body", "must be a JSON object", SHAPE)]
    multi = caps.multi_image_models()
    model, problems = _resolve_model(payload, caps, caps.default_for(MULTI_IMAGE), endpoint=None)
    if model is not None and not model.multi_image:
        problems.append(
            Problem(
                "model_name",
                f"multi-image to image is available on {', '.join(multi) or 'no model'} (not {model.name})",
            )
        )
    problems += _check_text(payload, "prompt", required=False)
    problems += _check_common(payload, model)
    subjects = payload.get("subject_image_list")
    if subjects is None:
        problems.append(Problem("subject_image_list", "is required (1 to 4 subject images)", SHAPE))
    elif not isinstance(subjects, list):
        problems.append(Problem("subject_image_list", 'must be a list of {"subject_image": ...}', SHAPE))
    elif not SUBJECTS_MIN <= len(subjects) <= SUBJECTS_MAX:
        problems.append(Problem("subject_image_list", f"must hold 1 to 4 subject images (got {len(subjects)})"))
    else:
        for i, item in enumerate(subjects):
            field = f"subject_image_list[{i}]"
            if not isinstance(item, Mapping) or "subject_image" not in item:
                problems.append(Problem(field, 'must be {"subject_image": URL or base64}', SHAPE))
                continue
            problems += check_image_value(field, item["subject_image"], images.get(field))
    for field in ("scene_image", "style_image"):
        value = payload.get(field)
        if value is not None and value != "":
            problems += check_image_value(field, value, images.get(field))
    return problems


# -- omni image and expansion ----------------------------------------------------------------


def prompt_references(prompt: str) -> tuple[set[int], set[int]]:
    """The 1-based image and element numbers a prompt refers to with <<<image_N>>> / <<<element_N>>>."""
    images: set[int] = set()
    elements: set[int] = set()
    for what, number in REFERENCE_RE.findall(prompt or ""):
        (images if what == "image" else elements).add(int(number))
    return images, elements


def _reference_problems(prompt: object, images: int, elements: int) -> list[Problem]:
    """<<<image_N>>> and <<<element_N>>> that name no input."""
    if not isinstance(prompt, str):
        return []
    used_images, used_elements = prompt_references(prompt)
    problems = [
        Problem("prompt", f"<<<image_{number}>>> refers to no image ({images} given)")
        for number in sorted(used_images)
        if not 1 <= number <= images
    ]
    problems += [
        Problem("prompt", f"<<<element_{number}>>> refers to no element ({elements} given)")
        for number in sorted(used_elements)
        if not 1 <= number <= elements
    ]
    return problems


def check_prompt(kind: str, prompt: str | None, images: int = 0, elements: int = 0) -> list[Problem]:
    """The rules on a request's prompt alone, for requests that differ in nothing else."""
    problems = _check_text({"prompt": prompt}, "prompt", required=kind in ("generation", "omni"))
    if kind == "omni":
        problems += _reference_problems(prompt, images, elements)
    return problems


def unreferenced_inputs(prompt: str, images: int, elements: int = 0) -> list[str]:
    """Inputs given but never referred to in the prompt (a warning, not an error): e.g. ["<<<image_2>>>"]."""
    used_images, used_elements = prompt_references(prompt)
    return [f"<<<image_{i}>>>" for i in range(1, images + 1) if i not in used_images] + [
        f"<<<element_{i}>>>" for i in range(1, elements + 1) if i not in used_elements
    ]


def images_made(kind: str, params: Mapping[str, Any]) -> int:
    """The images a task makes, which is also the concurrency slots it holds: n, or a series' size.

    `params` are a request's recorded parameters or its wire payload (the same names).
    """
    if kind == "omni" and params.get("result_type") == "series":
        amount = params.get("series_amount")
        return amount if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0 else SERIES_DEFAULT
    n = params.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _check_items(payload: Mapping[str, Any], field: str, key: str, what: str) -> tuple[list[Any], list[Problem]]:
    """A list field of {key: value} objects; returns the values (None where broken) and problems."""
    items = payload.get(field)
    if items is None:
        return [], []
    if not isinstance(items, list):
        return [], [Problem(field, f'must be a list of {{"{key}": {what}}}', SHAPE)]
    values: list[Any] = []
    problems: list[Problem] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or key not in item:
            problems.append(Problem(f"{field}[{i}]", f'must be {{"{key}": {what}}}', SHAPE))
            values.append(None)
        else:
            values.append(item[key])
    return values, problems


def _check_int(payload: Mapping[str, Any], field: str, low: int, high: int) -> list[Problem]:
    value = payload.get(field)
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool):
        return [Problem(field, f"must be an integer from {low} to {high}", SHAPE)]
    if not low <= value <= high:
        return [Problem(field, f"must be from {low} to {high} (got {value})")]
    return []


def validate_omni(
    payload: Any, caps: Capabilities | None = None, *, images: Mapping[str, bytes] | None = None
) -> list[Problem]:
    """Every rule for `POST /v1/images/omni-image`; an empty list means valid.

    `images` maps field paths (e.g. `image_list[0]`) to content already known.
    """
    caps = caps or default_capabilities()
    images = images or {}
    if not isinstance(payload, Mapping):
        return [Problem("body", "must be a JSON object", SHAPE)]
    model, problems = _resolve_model(payload, caps, caps.default_for(OMNI_IMAGE), OMNI_IMAGE)
    problems += _check_text(payload, "prompt", required=True)
    problems += _check_common(payload, model)

    image_values, found = _check_items(payload, "image_list", "image", "URL or base64")
    problems += found
    for i, value in enumerate(image_values):
        if value is not None:
            problems += check_image_value(f"image_list[{i}]", value, images.get(f"image_list[{i}]"))
    element_values, found = _check_items(payload, "element_list", "element_id", "an element id")
    problems += found
    for i, value in enumerate(element_values):
        if value is not None and (
            not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip()
        ):
            problems.append(Problem(f"element_list[{i}]", "element_id must be a non-empty id", SHAPE))
    total = len(image_values) + len(element_values)
    if total > OMNI_INPUTS_MAX:
        problems.append(
            Problem(
                "image_list",
                f"images + elements must be at most {OMNI_INPUTS_MAX} "
                f"(got {len(image_values)} + {len(element_values)})",
            )
        )

    problems += _reference_problems(payload.get("prompt"), len(image_values), len(element_values))

    resolution = payload.get("resolution")
    if resolution is not None and model is not None and resolution not in model.resolutions:
        problems.append(
            Problem("resolution", f"{model.name} supports {', '.join(model.resolutions)} (got {resolution!r})")
        )

    result_type = payload.get("result_type")
    if result_type is not None and result_type not in RESULT_TYPES:
        problems.append(Problem("result_type", f"must be 'single' or 'series' (got {result_type!r})"))
    elif result_type == "series":
        if model is not None and not model.series:
            series = [m.name for m in caps.models.values() if m.series and m.serves(OMNI_IMAGE)]
            problems.append(
                Problem("result_type", f"series is available on {', '.join(series) or 'no model'} (not {model.name})")
            )
        n = payload.get("n")
        if isinstance(n, int) and not isinstance(n, bool) and n > 1:
            problems.append(Problem("n", "must be 1 with result_type 'series' (series_amount sets how many images)"))
    problems += _check_int(payload, "series_amount", SERIES_MIN, SERIES_MAX)
    return problems


def expanded_size(width: int, height: int, ratios: Mapping[str, float]) -> tuple[int, int]:
    """The size of an expansion's result: each side grows by its ratio of the original's width or height."""
    return (
        round(width * (1 + ratios.get("left", 0) + ratios.get("right", 0))),
        round(height * (1 + ratios.get("up", 0) + ratios.get("down", 0))),
    )


def validate_expand(payload: Any, *, image_bytes: bytes | None = None) -> list[Problem]:
    """Every rule for `POST /v1/images/editing/expand`; an empty list means valid."""
    if not isinstance(payload, Mapping):
        return [Problem("body", "must be a JSON object", SHAPE)]
    problems: list[Problem] = []
    image = payload.get("image")
    if image is None or image == "":
        problems.append(Problem("image", "is required (the image to expand)", SHAPE))
    else:
        problems += check_image_value("image", image, image_bytes)
    ratios: dict[str, float] = {}
    for side in EXPAND_SIDES:
        field = f"{side}_expansion_ratio"
        value = payload.get(field)
        if value is None:
            problems.append(Problem(field, f"is required (0 to {EXPAND_RATIO_MAX:g})", SHAPE))
        elif not _is_number(value):
            problems.append(Problem(field, f"must be a number from 0 to {EXPAND_RATIO_MAX:g}", SHAPE))
        elif not 0 <= value <= EXPAND_RATIO_MAX:
            problems.append(Problem(field, f"must be from 0 to {EXPAND_RATIO_MAX:g} (got {value:g})"))
        else:
            ratios[side] = float(value)
    if len(ratios) == len(EXPAND_SIDES):
        area = (1 + ratios["left"] + ratios["right"]) * (1 + ratios["up"] + ratios["down"])
        if area > EXPAND_AREA_MAX + 1e-9:
            problems.append(
                Problem(
                    "expansion_ratio",
                    f"the new image may be at most {EXPAND_AREA_MAX:g}x the original's area: "
                    f"(1 + left + right) x (1 + up + down) = {area:.2f}",
                )
            )
    problems += _check_text(payload, "prompt", required=False)
    problems += _check_common(payload, None)
    return problems
