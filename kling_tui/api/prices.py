"""What a task costs before it is sent: its use, resolution and image count, priced by the table.

The same function prices a request's parameters (the estimate the form and the CLI show) and a
wire payload (the sandbox's `final_unit_deduction`), so the two cannot drift apart. For a
finished task the server's `final_unit_deduction` is the truth; this is an estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kling_tui.api.capabilities import KIND_ENDPOINTS, REFERENCE_TYPES, Capabilities, ModelCaps

SERIES_DEFAULT = 4


@dataclass(frozen=True)
class Price:
    """One task's estimate: `images` x `per_image` units."""

    model: str
    use: str
    resolution: str
    images: int
    per_image: float

    @property
    def units(self) -> float:
        return self.images * self.per_image


def model_for(caps: Capabilities, kind: str, fields: Mapping[str, Any]) -> ModelCaps | None:
    """The model a task runs on: the one named, else the endpoint's default (as the service picks)."""
    if kind not in KIND_ENDPOINTS:
        return None  # expansion: no model, priced by its use alone
    name = fields.get("model_name") or caps.default_for(KIND_ENDPOINTS[kind])
    return caps.get(name) if isinstance(name, str) else None


def task_use(kind: str, fields: Mapping[str, Any], model: ModelCaps | None) -> tuple[str, str]:
    """(use, resolution) of a task, from its parameters or its wire payload."""
    resolution = fields.get("resolution") if isinstance(fields.get("resolution"), str) else None
    if kind == "multi":
        return "multi_image", "1k"
    if kind != "generation":  # omni, expand and any later kind: priced by their own name
        return kind, resolution or "1k"
    if not fields.get("image"):
        return "text_to_image", resolution or "1k"
    if fields.get("image_reference") in REFERENCE_TYPES:
        return "reference", resolution or "1k"
    if model is not None and model.restyle:
        return "restyle", "1k"  # output keeps the input's size; priced as 1k
    return "image_to_image", resolution or "1k"


def task_images(kind: str, fields: Mapping[str, Any]) -> int:
    """How many images a task makes (a series makes `series_amount`)."""
    if kind == "omni" and fields.get("result_type") == "series":
        amount = fields.get("series_amount")
        return amount if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0 else SERIES_DEFAULT
    n = fields.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def price(caps: Capabilities, kind: str, fields: Mapping[str, Any]) -> Price:
    """The estimate for one task (0 units on a model the table does not know)."""
    model = model_for(caps, kind, fields)
    use, resolution = task_use(kind, fields, model)
    return Price(
        model=model.name if model else str(fields.get("model_name") or ""),
        use=use,
        resolution=resolution,
        images=task_images(kind, fields),
        per_image=caps.unit_price(model, use, resolution),
    )


def format_usd(usd: float) -> str:
    """ "$0.0035", "$0.028", "$1.20": as many decimals as the price has, at least two."""
    text = f"{usd:.4f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def describe(units: float, caps: Capabilities) -> str:
    """ "8 units ($0.028)": an estimate as the form, the confirm and the CLI show it."""
    return f"{units:g} unit{'' if units == 1 else 's'} ({format_usd(caps.usd(units))})"


USE_LABELS = {
    "text_to_image": "text-to-image",
    "image_to_image": "image-to-image",
    "reference": "subject/face reference",
    "restyle": "restyle",
    "multi_image": "multi-image",
    "omni": "omni",
    "expand": "expansion",
}


def price_list(caps: Capabilities, model: ModelCaps) -> list[Price]:
    """Every use and resolution `model` can do, priced (plus any use its prices name)."""
    pairs: list[tuple[str, str]] = []
    if model.text_to_image:
        pairs += [("text_to_image", res) for res in model.resolutions]
    if "entire" in model.image_modes:
        pairs += [("image_to_image", res) for res in model.image_resolutions]
    if model.reference_types:
        pairs += [("reference", res) for res in model.image_resolutions]
    if model.restyle:
        pairs.append(("restyle", "1k"))
    if model.multi_image:
        pairs.append(("multi_image", "1k"))
    for key in model.prices:
        use, _, res = key.partition("_") if key.startswith("default") else _split_key(key)
        if use != "default" and (use, res or "1k") not in pairs:
            pairs.append((use, res or "1k"))
    if model.prices:  # a priced model lists only what the price list names
        pairs = [(use, res) for use, res in pairs if use in caps.use_prices or model.usd_price(use, res) is not None]
    return [Price(model.name, use, res, 1, caps.unit_price(model, use, res)) for use, res in pairs]


def _split_key(key: str) -> tuple[str, str, str]:
    """ "omni_4k" -> ("omni", "_", "4k"); "multi_image" -> ("multi_image", "", "")."""
    head, _, tail = key.rpartition("_")
    if head and tail in ("1k", "2k", "4k"):
        return head, "_", tail
    return key, "", ""
