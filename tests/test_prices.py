"""Prices: the estimate before submit is what the sandbox deducts, and both follow Kling's price list."""

from __future__ import annotations

import pytest

from kling_tui.api.auth import ApiKeyAuth
from kling_tui.api.capabilities import default_capabilities, load_capabilities
from kling_tui.api.client import KlingClient
from kling_tui.api.prices import price
from kling_tui.api.types import ExpandRequest, GenerationRequest, MultiImageRequest, OmniRequest
from kling_tui.sandbox import DEFAULT_API_KEY
from kling_tui.work.variants import estimate_units

URL = "https://example.com/reference.png"

# USD per image from Kling's price list (kling-today.md), for every model x use x resolution
# the packaged table lets the sandbox accept.
PRICE_LIST = {
    ("kling-v1", "text 1k"): 0.0035,
    ("kling-v1", "image 1k"): 0.0035,
    ("kling-v1-5", "text 1k"): 0.014,
    ("kling-v1-5", "subject 1k"): 0.028,
    ("kling-v1-5", "face 1k"): 0.028,
    ("kling-v2", "text 1k"): 0.014,
    ("kling-v2", "text 2k"): 0.014,
    ("kling-v2", "restyle"): 0.028,
    ("kling-v2", "multi"): 0.056,
    ("kling-v2-new", "restyle"): 0.028,
    ("kling-v2-1", "text 1k"): 0.014,
    ("kling-v2-1", "multi"): 0.028,
    ("kling-v3", "text 1k"): 0.028,
    ("kling-v3", "text 2k"): 0.028,
    ("kling-v3", "image 1k"): 0.028,
    ("kling-image-o1", "omni 1k"): 0.028,
    ("kling-image-o1", "omni 2k"): 0.028,
    ("kling-v3-omni", "omni 1k"): 0.028,
    ("kling-v3-omni", "omni 2k"): 0.028,
    ("kling-v3-omni", "omni 4k"): 0.056,
    ("kling-v3-omni", "series 1k"): 0.028,
    ("-", "expand"): 0.028,
}
SERIES = 3


def every_combination(caps):
    """(model, case, request) for each use and resolution each usable model accepts."""
    for model in caps.models.values():
        if model.discontinued:
            continue
        if model.serves("omni-image"):
            for res in model.resolutions:
                yield model.name, f"omni {res}", OmniRequest(prompt="p", model_name=model.name, resolution=res)
            if model.series:
                series = OmniRequest(prompt="p", model_name=model.name, result_type="series", series_amount=SERIES)
                yield model.name, "series 1k", series
        if not model.serves("generations"):
            continue
        if model.text_to_image:
            for res in model.resolutions:
                yield model.name, f"text {res}", GenerationRequest(prompt="p", model_name=model.name, resolution=res)
        for mode in model.image_modes:
            if mode == "restyle":
                yield model.name, "restyle", GenerationRequest(prompt="p", model_name=model.name, image=URL)
                continue
            reference = mode if mode in ("subject", "face") else None
            for res in model.image_resolutions:
                request = GenerationRequest(
                    prompt="p", model_name=model.name, image=URL, image_reference=reference, resolution=res
                )
                yield model.name, f"{reference or 'image'} {res}", request
        if model.multi_image:
            yield model.name, "multi", MultiImageRequest(subject_images=[URL], prompt="p", model_name=model.name)
    yield "-", "expand", ExpandRequest(image=URL, left_expansion_ratio=0.5)


def test_the_table_prices_every_combination_as_kling_lists_it():
    caps = default_capabilities()
    seen = {}
    for name, case, request in every_combination(caps):
        images = SERIES if case.startswith("series") else 1
        seen[(name, case)] = round(estimate_units([request], caps) * caps.usd_per_unit / images, 6)
    assert seen == PRICE_LIST


async def test_the_estimate_is_what_the_sandbox_deducts_for_every_model_use_and_resolution(sandbox):
    caps = default_capabilities()
    async with KlingClient(sandbox.base_url, ApiKeyAuth(DEFAULT_API_KEY), caps=caps) as client:
        for name, case, request in every_combination(caps):
            if not case.startswith("series"):  # a series makes SERIES (= 3) images, n stays unset
                request.n = 3
            estimate = estimate_units([request], caps)
            task = await client.create(request)
            sandbox.state.clock.advance(1)  # past submitted and processing
            done = await client.get(task.task_id, request.kind)
            assert done.task_status == "succeed"
            assert float(done.final_unit_deduction) == estimate, (name, case)
            assert estimate == 3 * PRICE_LIST[(name, case)] / caps.usd_per_unit


def test_image_expansion_costs_the_same_on_any_model():
    caps = default_capabilities()
    for model in (None, "kling-v1", "kling-v3"):
        estimate = price(caps, "expand", {"model_name": model, "n": 2})
        assert (estimate.use, estimate.units) == ("expand", 16.0)  # 2 x 0.028 USD


def test_a_resolution_without_its_own_price_costs_the_1k_price_and_a_4k_price_is_used_when_listed():
    caps = load_capabilities(
        {
            "models": {
                "wide": {
                    "resolutions": ["1k", "2k", "4k"],
                    "prices": {"text_to_image": 0.007, "text_to_image_4k": 0.014},
                }
            }
        }
    )
    units = {
        res: price(caps, "generation", {"model_name": "wide", "resolution": res}).units for res in ("1k", "2k", "4k")
    }
    assert units == {"1k": 2.0, "2k": 2.0, "4k": 4.0}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"units_per_image": 5.0}, 10.0),  # a flat price in a config replaces the packaged table
        ({"prices": {"default": 0.0175}}, 10.0),  # 0.0175 USD = 5 units
    ],
)
def test_a_config_can_reprice_a_model(override, expected):
    caps = load_capabilities({"models": {"kling-v3": override}})
    assert estimate_units([GenerationRequest(prompt="p", model_name="kling-v3", n=2)], caps) == expected


def test_the_models_price_list_names_only_listed_prices_and_omni_resolutions():
    from kling_tui.api.prices import price_list

    caps = load_capabilities(
        {
            "models": {
                "omni-like": {
                    "text_to_image": True,
                    "resolutions": ["1k", "2k"],
                    "prices": {"omni": 0.028, "omni_4k": 0.056},
                }
            }
        }
    )
    listed = [(p.use, p.resolution, p.per_image) for p in price_list(caps, caps.get("omni-like"))]
    assert listed == [("omni", "1k", 8.0), ("omni", "4k", 16.0)]
    v2 = [(p.use, p.resolution, p.per_image) for p in price_list(caps, caps.get("kling-v2"))]
    assert v2 == [
        ("text_to_image", "1k", 4.0),
        ("text_to_image", "2k", 4.0),
        ("restyle", "1k", 8.0),
        ("multi_image", "1k", 16.0),
    ]
