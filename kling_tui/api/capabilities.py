"""The model capability table: packaged TOML data, extendable from the user's config."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from typing import Any

IMAGE_MODES = ("entire", "subject", "face", "restyle")
REFERENCE_TYPES = ("subject", "face")
# The model-served endpoints, by the last part of their path (expansion takes no model).
ENDPOINTS = ("generations", "multi-image2image", "omni-image")
GENERATIONS, MULTI_IMAGE, OMNI_IMAGE = ENDPOINTS


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
    units_per_image: float
    units_per_image_2k: float
    discontinued: bool = False
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
        per = {"2k": self.units_per_image_2k, "4k": self.units_per_image_4k}.get(resolution or "", self.units_per_image)
        return per * n


@dataclass(frozen=True)
class Capabilities:
    default_model: str
    models: Mapping[str, ModelCaps]

    def get(self, name: str) -> ModelCaps | None:
        return self.models.get(name)

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
    return ModelCaps(**values)


@lru_cache(maxsize=1)
def _packaged() -> dict[str, Any]:
    text = resources.files("kling_tui.api").joinpath("models.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_capabilities(overrides: Mapping[str, Any] | None = None) -> Capabilities:
    """The packaged table, with `overrides` (a config's `[models]` tables) merged in.

    `overrides` may hold `default_model` and a `models` mapping of name -> fields; a known
    model keeps every field the override does not name.
    """
    data = _packaged()
    models: dict[str, ModelCaps] = {name: _model_from(name, fields_, None) for name, fields_ in data["models"].items()}
    default = data.get("default_model", "kling-v1")
    if overrides:
        for name, fields_ in (overrides.get("models") or {}).items():
            models[name] = _model_from(name, fields_, models.get(name))
        default = overrides.get("default_model", default)
    return Capabilities(default_model=default, models=models)


@lru_cache(maxsize=1)
def default_capabilities() -> Capabilities:
    return load_capabilities()
