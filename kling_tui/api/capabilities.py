"""The model table: capabilities, lifecycle and prices as packaged TOML data, extendable from the user's config."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

IMAGE_MODES = ("entire", "subject", "face", "restyle")
REFERENCE_TYPES = ("subject", "face")
# What a task does, for its price (see models.toml, "Prices").
USES = ("text_to_image", "image_to_image", "reference", "restyle", "multi_image", "omni", "expand")
RESOLUTIONS = ("1k", "2k", "4k")
DEFAULT_USD_PER_UNIT = 0.0035
# Within this many days of its retirement a model is announced as retiring.
RETIREMENT_NOTICE_DAYS = 30
_DISCONTINUED = re.compile(r"The model '([^']+)' has been discontinued")


def discontinued_message(name: str) -> str:
    """The service's own words for a retired model (kling-protocol.md, [live])."""
    return f"The model '{name}' has been discontinued"


def discontinued_model(message: str) -> str | None:
    """The model a server message says is discontinued, or None."""
    found = _DISCONTINUED.search(message or "")
    return found.group(1) if found else None


def parse_date(value: Any) -> dt.date | None:
    """A TOML date, a "YYYY-MM-DD" string, or nothing ("" / None); ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip())
    raise ValueError(f"not a date: {value!r}")


# The model-served endpoints, by the last part of their path (expansion takes no model).
ENDPOINTS = ("generations", "multi-image2image", "omni-image")
GENERATIONS, MULTI_IMAGE, OMNI_IMAGE = ENDPOINTS
# The kinds of request (one per create endpoint), and the endpoint whose models each runs on
# (expansion takes no model).
Kind = Literal["generation", "multi", "omni", "expand"]
KINDS: tuple[Kind, ...] = ("generation", "multi", "omni", "expand")
KIND_ENDPOINTS = {"generation": GENERATIONS, "multi": MULTI_IMAGE, "omni": OMNI_IMAGE}


@dataclass(frozen=True)
class ModelCaps:
    name: str
    label: str
    text_to_image: bool
    image_modes: tuple[str, ...]
    multi_image: bool
    aspect_ratios: tuple[str, ...]
    resolutions: tuple[str, ...]
    image_resolutions: tuple[str, ...]
    units_per_image: float = 1.0
    units_per_image_2k: float = 1.0
    discontinued: bool = False
    retires: dt.date | None = None
    successor: str | None = None
    note: str = ""
    # USD per image by use key ("text_to_image", "omni_4k", "default"...); empty: units_per_image.
    prices: Mapping[str, float] = field(default_factory=dict, compare=False)
    endpoints: tuple[str, ...] = (GENERATIONS,)
    series: bool = False  # omni-image: result_type "series"
    units_per_image_4k: float = 0.0

    def serves(self, endpoint: str) -> bool:
        return endpoint in self.endpoints

    @property
    def reference_types(self) -> tuple[str, ...]:
        """The `image_reference` values this model accepts (empty: none)."""
        return tuple(m for m in self.image_modes if m in REFERENCE_TYPES)

    @property
    def requires_reference(self) -> bool:
        """An `image` on this model must come with an `image_reference`."""
        return bool(self.reference_types) and not ({"entire", "restyle"} & set(self.image_modes))

    @property
    def restyle(self) -> bool:
        return "restyle" in self.image_modes

    @property
    def accepts_image(self) -> bool:
        return bool(self.image_modes)

    def units(self, n: int, resolution: str | None = None) -> float:
        """The flat price (units_per_image); priced models go through `Capabilities.unit_price`."""
        per = {"2k": self.units_per_image_2k, "4k": self.units_per_image_4k}.get(resolution or "", self.units_per_image)
        return per * n

    def retired_on(self, day: dt.date) -> bool:
        """Retired by the table on `day`: discontinued, or its retirement date has come."""
        return self.discontinued or (self.retires is not None and self.retires <= day)

    def retiring_soon(self, day: dt.date, days: int = RETIREMENT_NOTICE_DAYS) -> bool:
        """Not retired yet, but within `days` of its announced date."""
        return self.retires is not None and day < self.retires <= day + dt.timedelta(days=days)

    def usd_price(self, use: str, resolution: str | None) -> float | None:
        """USD per image for `use` at `resolution` from this model's prices, or None."""
        res = resolution or "1k"
        keys = ([f"{use}_{res}"] if res != "1k" else []) + [use] + ([f"default_{res}"] if res != "1k" else [])
        for key in [*keys, "default"]:
            if key in self.prices:
                return float(self.prices[key])
        return None


@dataclass(frozen=True)
class Capabilities:
    default_model: str
    models: Mapping[str, ModelCaps]
    # The form's default: the first of these not retired (then any model not retired).
    default_models: tuple[str, ...] = ()
    usd_per_unit: float = DEFAULT_USD_PER_UNIT
    # USD per image of uses priced the same on every model ("expand").
    use_prices: Mapping[str, float] = field(default_factory=dict, compare=False)

    def get(self, name: str) -> ModelCaps | None:
        return self.models.get(name)

    def unit_price(self, model: ModelCaps | None, use: str, resolution: str | None = None) -> float:
        """Units per image of `use` on `model` at `resolution` (1k when None)."""
        if use in self.use_prices:
            return self.to_units(self.use_prices[use])
        if model is None:
            return 0.0
        usd = model.usd_price(use, resolution)
        if usd is None:
            return model.units(1, resolution)
        return self.to_units(usd)

    def usd(self, units: float) -> float:
        return units * self.usd_per_unit

    def to_units(self, usd: float) -> float:
        # Rounded: 0.014 / 0.0035 is 4.000000000000001 in floating point.
        return round(usd / self.usd_per_unit, 6)

    def retirement_notice(
        self, name: str | None, day: dt.date, remembered: Mapping[str, dt.date] | None = None
    ) -> str | None:
        """A warning for sending to `name` on `day`: retired, or retiring within 30 days; None when fine.

        `remembered`: models the service itself answered "discontinued" for, with the day it did.
        """
        model = self.get(name) if name else None
        if not name or (model is None and not (remembered and name in remembered)):
            return None
        if remembered and name in remembered:
            text = f"{name} has been discontinued (the service said so on {remembered[name].isoformat()})"
        elif model is None:
            return None
        elif model.retires is not None and model.retires <= day:
            text = f"{name} retired on {model.retires.isoformat()}"
        elif model.discontinued:
            text = f"{name} has been discontinued"
        elif model.retiring_soon(day):
            assert model.retires is not None
            days = (model.retires - day).days
            text = f"{name} retires on {model.retires.isoformat()} (in {days} day{'s' if days != 1 else ''})"
        else:
            return None
        successor = model.successor if model is not None else None
        return f"{text}; successor: {successor}" if successor else f"{text}; no successor is named"

    def preferred_model(self, day: dt.date, retired: frozenset[str] = frozenset()) -> str:
        """The first model of `default_models` not retired on `day` nor in `retired`."""
        for name in (*self.default_models, *self.models):
            model = self.models.get(name)
            if model is not None and not model.retired_on(day) and name not in retired:
                return name
        return self.default_model

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def models_for(self, endpoint: str) -> list[str]:
        """The models that serve `endpoint`, in table order (the first is that endpoint's default)."""
        return [m.name for m in self.models.values() if m.serves(endpoint)]

    def multi_image_models(self) -> list[str]:
        return self.models_for(MULTI_IMAGE)

    def default_for(self, endpoint: str) -> str:
        """The model a request to `endpoint` without a model_name gets."""
        if endpoint == GENERATIONS:
            return self.default_model
        served = self.models_for(endpoint)
        return served[0] if served else self.default_model


_LIST_FIELDS = {"image_modes", "aspect_ratios", "resolutions", "image_resolutions", "endpoints"}


def _model_from(name: str, data: Mapping[str, Any], base: ModelCaps | None) -> ModelCaps:
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(ModelCaps)} if base else {}
    values["name"] = name
    for f in fields(ModelCaps):
        if f.name in data and f.name != "name":
            value = data[f.name]
            values[f.name] = tuple(value) if f.name in _LIST_FIELDS else value
    values.setdefault("label", name)
    values.setdefault("text_to_image", True)
    values.setdefault("image_modes", ())
    values.setdefault("multi_image", False)
    values.setdefault("aspect_ratios", ("16:9", "9:16", "1:1", "4:3", "3:4", "3:2", "2:3"))
    values.setdefault("resolutions", ("1k",))
    values.setdefault("image_resolutions", ("1k",))
    values.setdefault("units_per_image", 1.0)
    values.setdefault("units_per_image_2k", values["units_per_image"])
    values.setdefault("units_per_image_4k", values["units_per_image_2k"])
    values.setdefault("series", False)
    # `multi_image` predates `endpoints`: the two always agree, whichever the data names.
    if "endpoints" in data:
        values["multi_image"] = MULTI_IMAGE in values["endpoints"]
    else:
        endpoints = [e for e in values.get("endpoints", (GENERATIONS,)) if e != MULTI_IMAGE]
        values["endpoints"] = tuple(endpoints + ([MULTI_IMAGE] if values["multi_image"] else []))
    for name in ("units_per_image", "units_per_image_2k", "units_per_image_4k"):
        values[name] = float(values[name])
    flat = {"units_per_image", "units_per_image_2k", "units_per_image_4k"}
    if base is not None and "prices" not in data and flat & set(data):
        values["prices"] = {}  # a flat price set in a config replaces the packaged table
    values["prices"] = {str(k): float(v) for k, v in (values.get("prices") or {}).items()}
    values["retires"] = parse_date(values.get("retires"))
    values["successor"] = values.get("successor") or None
    values["note"] = values.get("note") or ""
    return ModelCaps(**values)


@lru_cache(maxsize=1)
def _packaged() -> dict[str, Any]:
    # Beside this module in every install (package data); a plain read, as importlib.resources
    # would first import its readers and zipfile.
    text = (Path(__file__).parent / "models.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_capabilities(overrides: Mapping[str, Any] | None = None) -> Capabilities:
    """The packaged table, with `overrides` (a config's `[models]` tables) merged in.

    `overrides` may hold `default_model` and a `models` mapping of name -> fields; a known
    model keeps every field the override does not name.
    """
    data = _packaged()
    prices = data.get("prices") or {}
    models: dict[str, ModelCaps] = {
        name: _model_from(name, {"prices": prices.get(name, {}), **fields_}, None)
        for name, fields_ in data["models"].items()
    }
    default = data.get("default_model", "kling-v1")
    preferred = tuple(data.get("default_models") or ())
    if overrides:
        for name, fields_ in (overrides.get("models") or {}).items():
            models[name] = _model_from(name, fields_, models.get(name))
        if overrides.get("default_model"):
            default = overrides["default_model"]
            preferred = (default, *preferred)  # the model a config names comes first in the form
        preferred = tuple(overrides.get("default_models") or preferred)
    use_prices = {use: float(table["price_usd"]) for use, table in (data.get("uses") or {}).items()}
    return Capabilities(
        default_model=default,
        models=models,
        default_models=preferred,
        usd_per_unit=float(data.get("usd_per_unit", DEFAULT_USD_PER_UNIT)),
        use_prices=use_prices,
    )


@lru_cache(maxsize=1)
def default_capabilities() -> Capabilities:
    return load_capabilities()
