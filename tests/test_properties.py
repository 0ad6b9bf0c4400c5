"""Property tests: the client's validation and the sandbox's answer agree on every payload.

Generated payloads mix valid and broken values (wrong types, out of range, model/ratio/
resolution combinations a model lacks, image with negative prompt, references on models
without them, bad images). Valid means 200 from the sandbox; invalid means the sandbox's
4xx names the same field, and KlingClient.create never sends an invalid request.
"""

from __future__ import annotations

import asyncio
import base64
import io
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from kling_tui.api.auth import JwtAuth
from kling_tui.api.capabilities import default_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.errors import InvalidRequest, http_status_for
from kling_tui.api.types import ExpandRequest, GenerationRequest, MultiImageRequest, OmniRequest
from kling_tui.api.validation import validate_expand, validate_generation, validate_multi_image, validate_omni
from kling_tui.sandbox import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Sandbox, SandboxConfig

CAPS = default_capabilities()
MODELS = sorted(CAPS.names)
RATIOS = sorted({r for m in CAPS.models.values() for r in m.aspect_ratios}) + ["5:4", "", "1:1 "]
UNIQUE = "<unique>"  # replaced by a fresh id per example: reusing one is refused (1201)
CALLBACK = "http://127.0.0.1:9/callback"  # the discard port: callbacks fail at once, on loopback

PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _png(width: int, height: int, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


GOOD_IMAGE = _png(400, 400)
WIRE_IMAGES = [
    "https://example.com/ref.png",
    _b64(GOOD_IMAGE),
    _b64(_png(120, 120)),  # too small
    _b64(_png(1000, 300)),  # beyond 2.5:1
    _b64(_png(400, 400, "GIF")),  # not JPG/PNG
    "data:image/png;base64," + _b64(GOOD_IMAGE),
    "not base64 at all!",
    "ftp://example.com/ref.png",
    "",
]

LIVE = [m for m in CAPS.models.values() if not m.discontinued and m.serves("generations")]
MULTI = [m for m in CAPS.models.values() if not m.discontinued and m.multi_image]
OMNI = [m for m in CAPS.models.values() if not m.discontinued and m.serves("omni-image")]
URL_IMAGE = "https://example.com/ref.png"
GOOD_IMAGES = [URL_IMAGE, _b64(GOOD_IMAGE)]
DELETE = object()

COMMON_BREAKS = [
    ("n", 0),
    ("n", 10),
    ("n", True),
    ("n", "3"),
    ("n", 2.0),
    ("aspect_ratio", "5:4"),
    ("aspect_ratio", "21:9"),
    ("aspect_ratio", ""),
    ("aspect_ratio", 1),
    ("callback_url", "not a url"),
    ("callback_url", "ftp://example.com/cb"),
    ("callback_url", 5),
    ("external_task_id", ""),
    ("external_task_id", " "),
    ("external_task_id", "x" * 65),
    ("external_task_id", 7),
    ("watermark_info", {"enabled": "yes"}),
    ("watermark_info", True),
    ("model_name", "kling-v9"),
    ("model_name", 3),
    ("prompt", "p" * 2501),
    ("prompt", 12),
]
GENERATION_BREAKS = COMMON_BREAKS + [
    ("prompt", DELETE),
    ("prompt", ""),
    ("prompt", "   "),
    ("negative_prompt", "blurry"),
    ("negative_prompt", "n" * 2501),
    ("negative_prompt", 1),
    *[("image", value) for value in WIRE_IMAGES[2:]],
    ("image", DELETE),
    ("image", 5),
    ("image", URL_IMAGE),
    ("image_reference", "subject"),
    ("image_reference", "face"),
    ("image_reference", "style"),
    ("image_reference", 1),
    ("image_fidelity", 0.5),
    ("image_fidelity", 1.5),
    ("image_fidelity", "0.5"),
    ("image_fidelity", True),
    ("human_fidelity", 0.5),
    ("human_fidelity", -0.1),
    ("resolution", "2k"),
    ("resolution", "4k"),
    ("resolution", 1),
    *[("model_name", m.name) for m in LIVE + OMNI],
]
MULTI_BREAKS = COMMON_BREAKS + [
    ("model_name", "kling-v1"),
    ("model_name", "kling-v3"),
    ("subject_image_list", DELETE),
    ("subject_image_list", []),
    ("subject_image_list", "x"),
    ("subject_image_list", [{"subject_image": URL_IMAGE}] * 5),
    ("subject_image_list", [{"image": URL_IMAGE}]),
    ("subject_image_list", [URL_IMAGE]),
    *[("subject_image_list", [{"subject_image": value}]) for value in WIRE_IMAGES[2:]],
    *[("scene_image", value) for value in WIRE_IMAGES[2:]],
    ("style_image", "data:x"),
    ("style_image", 4),
]


def _maybe(draw, strategy):
    return draw(strategy) if draw(st.booleans()) else None


def _common(draw, model) -> dict:
    payload = {"model_name": model.name}
    optional = {
        "n": st.integers(1, 9),
        "aspect_ratio": st.sampled_from(model.aspect_ratios),
        "callback_url": st.just(CALLBACK),
        "external_task_id": st.just(UNIQUE),
        "watermark_info": st.builds(lambda on: {"enabled": on}, st.booleans()),
    }
    for name, strategy in optional.items():
        value = _maybe(draw, strategy)
        if value is not None:
            payload[name] = value
    return payload


def _break(draw, payload: dict, breaks) -> dict:
    """Half the examples stay valid; the rest get one or two changes that may break them."""
    for name, value in draw(st.one_of(st.just([]), st.lists(st.sampled_from(breaks), min_size=1, max_size=2))):
        if value is DELETE:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


@st.composite
def generation_payloads(draw):
    model = draw(st.sampled_from(LIVE))
    payload = _common(draw, model)
    payload["prompt"] = draw(st.sampled_from(["a red kite over the sea", "portrait of a fox"]))
    if model.accepts_image and (not model.text_to_image or draw(st.booleans())):
        payload["image"] = draw(st.sampled_from(GOOD_IMAGES))
        if model.reference_types and (model.requires_reference or draw(st.booleans())):
            payload["image_reference"] = draw(st.sampled_from(model.reference_types))
            if payload["image_reference"] == "subject" and draw(st.booleans()):
                payload["human_fidelity"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            payload["image_fidelity"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            payload["resolution"] = draw(st.sampled_from(model.image_resolutions))
    else:
        if draw(st.booleans()):
            payload["negative_prompt"] = "blurry, low quality"
        if draw(st.booleans()):
            payload["resolution"] = draw(st.sampled_from(model.resolutions))
    if draw(st.booleans()):
        del payload["model_name"]  # the default model then applies
        if not CAPS.get(CAPS.default_model).accepts_image:
            payload.pop("image", None)
    return _break(draw, payload, GENERATION_BREAKS)


@st.composite
def multi_payloads(draw):
    model = draw(st.sampled_from(MULTI))
    payload = _common(draw, model)
    subjects = draw(st.lists(st.sampled_from(GOOD_IMAGES), min_size=1, max_size=4))
    payload["subject_image_list"] = [{"subject_image": image} for image in subjects]
    for name in ("prompt", "scene_image", "style_image"):
        value = _maybe(draw, st.sampled_from(GOOD_IMAGES) if name != "prompt" else st.just("two friends"))
        if value is not None:
            payload[name] = value
    return _break(draw, payload, MULTI_BREAKS)


@pytest.fixture(scope="module")
def sandbox():
    # Room for every valid example: no 1303 or 1102 may hide a validation answer.
    config = SandboxConfig(submitted_seconds=0.01, processing_seconds=0.01, slots=10**6, total_units=1e12, seed=5)
    with Sandbox(config) as sb:
        yield sb


@pytest.fixture(scope="module")
def api(sandbox):
    auth = JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)
    with httpx.Client(base_url=sandbox.base_url, headers={"Authorization": auth.authorization_header()}) as http:
        yield http


@pytest.fixture(scope="module")
def runner():
    with asyncio.Runner() as run:
        yield run


@pytest.fixture(scope="module")
def client(sandbox, runner):
    client = KlingClient(sandbox.base_url, JwtAuth(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY), max_retries=0)
    yield client
    runner.run(client.aclose())


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    files = {  # the usable ones first
        "good.png": GOOD_IMAGE,
        "small.png": _png(120, 120),
        "wide.jpg": _png(1000, 300, "JPEG"),
        "animated.gif": _png(400, 400, "GIF"),
        "fake.png": b"not an image",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    paths = [str(folder / name) for name in files]
    return [paths[0], "https://example.com/ref.jpg", *paths[1:], str(folder / "missing.png")]


def _unique(payload: dict) -> dict:
    if payload.get("external_task_id") == UNIQUE:
        payload["external_task_id"] = uuid.uuid4().hex
    return payload


def _assert_sandbox_agrees(answer: httpx.Response, problems) -> None:
    event("valid" if not problems else f"invalid: {problems[0].field}")
    body = answer.json()
    if not problems:
        assert (answer.status_code, body["code"]) == (200, 0), body
        assert body["data"]["task_id"]
        return
    first = problems[0]
    assert answer.status_code in (400, 404), body
    assert (answer.status_code, body["code"]) == (http_status_for(first.code), first.code), (problems, body)
    assert first.field in body["message"], (problems, body)


@PROPERTY_SETTINGS
@given(payload=generation_payloads())
def test_generation_rules_agree_with_the_sandbox(api, payload):
    payload = _unique(payload)
    problems = validate_generation(payload, CAPS)
    _assert_sandbox_agrees(api.post("/v1/images/generations", json=payload), problems)


@PROPERTY_SETTINGS
@given(payload=multi_payloads())
def test_multi_image_rules_agree_with_the_sandbox(api, payload):
    payload = _unique(payload)
    problems = validate_multi_image(payload, CAPS)
    _assert_sandbox_agrees(api.post("/v1/images/multi-image2image", json=payload), problems)


def _send_through_client(sandbox, api, runner, client, request, path: str) -> None:
    """The client sends a request exactly when it is valid, and the sandbox agrees."""
    payload, problems = request.build(CAPS, raise_on_problems=False)
    event("valid" if not problems else f"invalid: {problems[0].field}")
    before = sandbox.state.counters()
    if problems:
        with pytest.raises(InvalidRequest) as caught:
            runner.run(client.create(request))
        assert caught.value.problems == problems
        after = sandbox.state.counters()
        creates = ("create", "multi_create", "omni_create", "expand_create")
        assert [after[c] for c in creates] == [before[c] for c in creates]
        # The same payload sent raw: refused, naming one of the fields the client named.
        answer = api.post(path, json=_unique({**payload, "external_task_id": UNIQUE}))
        assert answer.status_code in (400, 404), answer.text
        assert any(p.field in answer.json()["message"] for p in problems), (problems, answer.text)
    else:
        task = runner.run(client.create(request))
        assert task.task_id in sandbox.state.tasks
        assert sandbox.state.counters()["invalid"] == before["invalid"]


def _typed_breaks(fields: dict[str, list]) -> list[tuple[str, object]]:
    return [(name, value) for name, values in fields.items() for value in values]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_client_sends_only_valid_generations(sandbox, api, runner, client, image_files, data):
    good, bad = image_files[:2], image_files[2:]
    model = data.draw(st.sampled_from(LIVE))
    kwargs: dict = {"prompt": "a lighthouse at dusk", "model_name": model.name}
    if model.accepts_image and (not model.text_to_image or data.draw(st.booleans())):
        kwargs["image"] = data.draw(st.sampled_from(good))
        if model.reference_types and (model.requires_reference or data.draw(st.booleans())):
            kwargs["image_reference"] = data.draw(st.sampled_from(model.reference_types))
    elif data.draw(st.booleans()):
        kwargs["negative_prompt"] = "blurry"
    kwargs["n"] = data.draw(st.sampled_from([None, 1, 4, 9]))
    kwargs["aspect_ratio"] = data.draw(st.sampled_from([None, *model.aspect_ratios]))
    kwargs["watermark"] = data.draw(st.sampled_from([None, True, False]))
    breaks = _typed_breaks(
        {
            "prompt": ["", "q" * 2501],
            "model_name": ["kling-v9", *[m.name for m in LIVE]],
            "negative_prompt": ["blurry"],
            "image": [*bad, None, good[0]],
            "image_reference": ["subject", "face", "style"],
            "image_fidelity": [0.5, 1.5],
            "human_fidelity": [0.3, -1.0],
            "resolution": ["1k", "2k", "8k"],
            "n": [0, 10],
            "aspect_ratio": ["5:4", "21:9"],
        }
    )
    for name, value in data.draw(st.one_of(st.just([]), st.lists(st.sampled_from(breaks), min_size=1, max_size=2))):
        kwargs[name] = value
    _send_through_client(sandbox, api, runner, client, GenerationRequest(**kwargs), "/v1/images/generations")


@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_client_sends_only_valid_multi_image_requests(sandbox, api, runner, client, image_files, data):
    good, bad = image_files[:2], image_files[2:]
    model = data.draw(st.sampled_from(MULTI))
    kwargs: dict = {
        "subject_images": data.draw(st.lists(st.sampled_from(good), min_size=1, max_size=4)),
        "model_name": model.name,
        "prompt": data.draw(st.sampled_from([None, "two friends"])),
        "scene_image": data.draw(st.sampled_from([None, *good])),
        "style_image": data.draw(st.sampled_from([None, *good])),
        "n": data.draw(st.sampled_from([None, 1, 9])),
        "aspect_ratio": data.draw(st.sampled_from([None, *model.aspect_ratios])),
    }
    breaks = _typed_breaks(
        {
            "subject_images": [[], [good[0]] * 5, *[[b] for b in bad], [good[0], bad[0]]],
            "prompt": ["w" * 2501],
            "model_name": ["kling-v1", "kling-v3", "kling-v9"],
            "scene_image": bad,
            "style_image": bad,
            "n": [0, 12],
            "aspect_ratio": ["5:4"],
        }
    )
    for name, value in data.draw(st.one_of(st.just([]), st.lists(st.sampled_from(breaks), min_size=1, max_size=2))):
        kwargs[name] = value
    _send_through_client(sandbox, api, runner, client, MultiImageRequest(**kwargs), "/v1/images/multi-image2image")


# -- omni image and expansion --------------------------------------------------------------------

OMNI_BREAKS = COMMON_BREAKS + [
    ("model_name", "kling-v1"),
    ("model_name", "kling-v2-1"),
    *[("model_name", m.name) for m in OMNI],
    ("prompt", DELETE),
    ("prompt", ""),
    ("prompt", "<<<image_5>>> at night"),
    ("prompt", "<<<element_3>>> waves"),
    ("image_list", [{"image": URL_IMAGE}] * 11),
    ("image_list", [{"url": URL_IMAGE}]),
    ("image_list", URL_IMAGE),
    *[("image_list", [{"image": value}]) for value in WIRE_IMAGES[2:]],
    ("element_list", [{"element_id": "e"}] * 10),
    ("element_list", [{"element_id": ""}]),
    ("element_list", [{"id": "e"}]),
    ("resolution", "4k"),
    ("resolution", "8k"),
    ("result_type", "series"),
    ("result_type", "album"),
    ("series_amount", 1),
    ("series_amount", 10),
    ("series_amount", "4"),
    ("n", 4),
]
EXPAND_BREAKS = [
    ("image", DELETE),
    *[("image", value) for value in WIRE_IMAGES[2:]],
    *[(f"{side}_expansion_ratio", value) for side in ("up", "left") for value in (DELETE, -0.1, 2.1, "0.5", True)],
    ("right_expansion_ratio", 2.0),
    ("down_expansion_ratio", 1.5),
    ("prompt", "p" * 2501),
    ("prompt", 3),
    ("n", 0),
    ("n", "2"),
    ("callback_url", "not a url"),
    ("external_task_id", "x" * 65),
    ("watermark_info", True),
]


@st.composite
def omni_payloads(draw):
    model = draw(st.sampled_from(OMNI))
    payload = _common(draw, model)
    images = draw(st.lists(st.sampled_from(GOOD_IMAGES), max_size=4))
    elements = draw(st.lists(st.sampled_from(["el-1", "el-2", 42]), max_size=3))
    if images:
        payload["image_list"] = [{"image": image} for image in images]
    if elements:
        payload["element_list"] = [{"element_id": element} for element in elements]
    referred = draw(st.lists(st.integers(1, len(images)), max_size=3)) if images else []
    payload["prompt"] = " and ".join([f"<<<image_{i}>>>" for i in referred] + ["a quiet harbour"])
    if elements and draw(st.booleans()):
        payload["prompt"] += " with <<<element_1>>>"
    if draw(st.booleans()):
        payload["resolution"] = draw(st.sampled_from(model.resolutions))
    if model.series and draw(st.booleans()):
        payload["result_type"] = "series"
        payload.pop("n", None)
        if draw(st.booleans()):
            payload["series_amount"] = draw(st.integers(2, 9))
    if draw(st.booleans()):
        del payload["model_name"]  # the endpoint's default model then applies
        payload.pop("result_type", None)
        payload.pop("resolution", None)
    return _break(draw, payload, OMNI_BREAKS)


RATIO_STEPS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0]) | st.floats(0, 2)


@st.composite
def expand_payloads(draw):
    payload: dict = {"image": draw(st.sampled_from(GOOD_IMAGES))}
    for side in ("up", "down", "left", "right"):
        payload[f"{side}_expansion_ratio"] = draw(RATIO_STEPS)
    for name, strategy in {
        "prompt": st.just("more sea"),
        "n": st.integers(1, 9),
        "callback_url": st.just(CALLBACK),
        "external_task_id": st.just(UNIQUE),
    }.items():
        value = _maybe(draw, strategy)
        if value is not None:
            payload[name] = value
    return _break(draw, payload, EXPAND_BREAKS)


@PROPERTY_SETTINGS
@given(payload=omni_payloads())
def test_omni_rules_agree_with_the_sandbox(api, payload):
    payload = _unique(payload)
    problems = validate_omni(payload, CAPS)
    _assert_sandbox_agrees(api.post("/v1/images/omni-image", json=payload), problems)


@PROPERTY_SETTINGS
@given(payload=expand_payloads())
def test_expansion_rules_agree_with_the_sandbox(api, payload):
    payload = _unique(payload)
    problems = validate_expand(payload)
    _assert_sandbox_agrees(api.post("/v1/images/editing/expand", json=payload), problems)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_client_sends_only_valid_omni_requests(sandbox, api, runner, client, image_files, data):
    good, bad = image_files[:2], image_files[2:]
    model = data.draw(st.sampled_from(OMNI))
    images = data.draw(st.lists(st.sampled_from(good), max_size=3))
    kwargs: dict = {
        "prompt": " ".join(f"<<<image_{i + 1}>>>" for i in range(len(images))) + " in ink",
        "model_name": model.name,
        "images": images,
        "elements": data.draw(st.lists(st.just("el-1"), max_size=2)),
        "resolution": data.draw(st.sampled_from([None, *model.resolutions])),
        "aspect_ratio": data.draw(st.sampled_from([None, *model.aspect_ratios])),
        "n": data.draw(st.sampled_from([None, 1, 4])),
    }
    if model.series and data.draw(st.booleans()):
        kwargs.update(result_type="series", series_amount=data.draw(st.integers(2, 9)), n=None)
    breaks = _typed_breaks(
        {
            "prompt": ["", "q" * 2501, "<<<image_9>>>"],
            "model_name": ["kling-v1", "kling-v9", *[m.name for m in OMNI]],
            "images": [[good[0]] * 11, *[[b] for b in bad], [good[0], bad[0]]],
            "elements": [["e"] * 10],
            "resolution": ["4k", "8k"],
            "result_type": ["series", "album"],
            "series_amount": [1, 10],
            "n": [0, 10, 3],
            "aspect_ratio": ["5:4"],
        }
    )
    for name, value in data.draw(st.one_of(st.just([]), st.lists(st.sampled_from(breaks), min_size=1, max_size=2))):
        kwargs[name] = value
    _send_through_client(sandbox, api, runner, client, OmniRequest(**kwargs), "/v1/images/omni-image")


@PROPERTY_SETTINGS
@given(data=st.data())
def test_the_client_sends_only_valid_expansions(sandbox, api, runner, client, image_files, data):
    good, bad = image_files[:2], image_files[2:]
    kwargs: dict = {
        "image": data.draw(st.sampled_from(good)),
        **{f"{side}_expansion_ratio": data.draw(RATIO_STEPS) for side in ("up", "down", "left", "right")},
        "prompt": data.draw(st.sampled_from([None, "more sky"])),
        "n": data.draw(st.sampled_from([None, 1, 9])),
    }
    breaks = _typed_breaks(
        {
            "image": bad,
            "up_expansion_ratio": [-0.5, 2.5],
            "left_expansion_ratio": [2.0],
            "prompt": ["w" * 2501],
            "n": [0, 12],
        }
    )
    for name, value in data.draw(st.one_of(st.just([]), st.lists(st.sampled_from(breaks), min_size=1, max_size=2))):
        kwargs[name] = value
    _send_through_client(sandbox, api, runner, client, ExpandRequest(**kwargs), "/v1/images/editing/expand")
