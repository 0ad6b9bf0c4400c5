"""`kling-tui models`: every model, what it can do, its price per image by use and resolution, its retirement."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from kling_tui.api.capabilities import Capabilities, ModelCaps
from kling_tui.api.prices import USE_LABELS, describe, format_usd, price_list
from kling_tui.base.textsafe import plain
from kling_tui.cli.output import EXIT_OK, Console
from kling_tui.config import Settings
from kling_tui.history.retired import RetiredModel, load_retired

ESTIMATE_NOTE = "estimates from Kling's price list; a finished task's final_unit_deduction is the truth"


def cmd_models(args: argparse.Namespace, settings: Settings, console: Console, today: dt.date | None = None) -> int:
    caps = settings.capabilities()
    day = today or dt.date.today()
    remembered = load_retired(sandbox=args.sandbox)
    rows = [model_json(caps, model, day, remembered) for model in caps.models.values()]
    if console.as_json:
        console.json(
            {
                "models": rows,
                "uses": {
                    use: {"units": caps.to_units(usd), "usd": usd} for use, usd in sorted(caps.use_prices.items())
                },
                "usd_per_unit": caps.usd_per_unit,
                "form_default": caps.preferred_model(day, frozenset(remembered)),
                "api_default": caps.default_model,
                "note": ESTIMATE_NOTE,
            }
        )
        return EXIT_OK
    for row, model in zip(rows, caps.models.values(), strict=True):
        for line in _lines(caps, model, row):
            console.out(plain(line))
        console.out()
    for use, usd in sorted(caps.use_prices.items()):
        console.out(f"{USE_LABELS.get(use, use)} on any model: {describe(caps.to_units(usd), caps)} an image")
    console.out(f"1 unit = {format_usd(caps.usd_per_unit)}; {ESTIMATE_NOTE}.")
    return EXIT_OK


def _status(caps: Capabilities, model: ModelCaps, day: dt.date, remembered: dict[str, RetiredModel]) -> str:
    if model.name in remembered or model.retired_on(day):
        return "retired"
    return "retiring" if model.retiring_soon(day) else "available"


def model_json(
    caps: Capabilities, model: ModelCaps, day: dt.date, remembered: dict[str, RetiredModel]
) -> dict[str, Any]:
    said = remembered.get(model.name)
    return {
        "name": model.name,
        "label": model.label,
        "endpoints": list(model.endpoints),
        "can": {
            "text_to_image": model.text_to_image,
            "image_modes": list(model.image_modes),
            "multi_image": model.multi_image,
            "series": model.series,
            "resolutions": list(model.resolutions),
            "image_resolutions": list(model.image_resolutions),
            "aspect_ratios": list(model.aspect_ratios),
        },
        "prices": [
            {"use": p.use, "resolution": p.resolution, "units": p.per_image, "usd": round(caps.usd(p.per_image), 6)}
            for p in price_list(caps, model)
        ],
        "status": _status(caps, model, day, remembered),
        "retires": model.retires.isoformat() if model.retires else None,
        "successor": model.successor,
        "note": model.note,
        "service_said": {"since": said.since.isoformat(), "message": said.message} if said else None,
        "warning": caps.retirement_notice(model.name, day, {n: r.since for n, r in remembered.items()}),
    }


def _lines(caps: Capabilities, model: ModelCaps, row: dict[str, Any]):
    status = {"retired": "  RETIRED", "retiring": "  RETIRING"}.get(row["status"], "")
    yield f"{model.name} ({model.label}){status}"
    can = []
    if model.text_to_image:
        can.append(f"text-to-image {'/'.join(model.resolutions)}")
    if "entire" in model.image_modes:
        can.append("image-to-image")
    if model.reference_types:
        can.append(f"{'/'.join(model.reference_types)} reference")
    if model.restyle:
        can.append("restyle")
    if model.multi_image:
        can.append("multi-image")
    if model.serves("omni-image"):
        can.append("edits and fusions of up to 10 inputs")
    if model.series:
        can.append("series")
    yield f"  serves:   {', '.join(model.endpoints)}"
    yield f"  can do:   {', '.join(can) or '-'}; ratios {' '.join(model.aspect_ratios)}"
    prices = [
        f"{USE_LABELS.get(p.use, p.use)}{'' if p.resolution == '1k' else ' ' + p.resolution} "
        f"{describe(p.per_image, caps)}"
        for p in price_list(caps, model)
    ]
    yield f"  price:    {' · '.join(prices) or '-'} (an image)"
    if row["warning"]:
        yield f"  warning:  {row['warning']}"
    else:
        retires = row["retires"] or "no date announced"
        successor = f"; successor: {model.successor}" if model.successor else ""
        yield f"  retires:  {retires}{successor}"
    if row["service_said"]:
        yield f"  service:  {row['service_said']['message']}"
    if model.note:
        yield f"  note:     {model.note}"
