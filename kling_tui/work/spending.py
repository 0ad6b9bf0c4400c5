"""Spending against the user's budget: what today and this session cost, and whether a submit passes a limit.

A finished task costs what the server deducted (`final_unit_deduction`, the truth); a task still
on its way costs its estimate from the price table; a task that was never created costs nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from dataclasses import dataclass

from kling_tui.api.capabilities import Capabilities
from kling_tui.api.prices import price
from kling_tui.config import Settings
from kling_tui.history.store import HistoryStore, TaskRow

PAGE = 500


def _units(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:  # a deduction the server wrote oddly counts as nothing known
        return 0.0


def task_cost(store: HistoryStore, caps: Capabilities, row: TaskRow) -> float:
    if row.status in ("succeed", "failed"):
        return _units(row.units)
    if row.status == "not_created":
        return 0.0
    record = store.get(row.local_id)
    return price(caps, record.kind, record.params).units if record is not None else 0.0


def spent_today(store: HistoryStore, caps: Capabilities, now: float | None = None) -> float:
    """Units of the tasks created since local midnight."""
    now = time.time() if now is None else now
    midnight = dt.datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    total, offset = 0.0, 0
    while True:
        rows = store.recent(PAGE, offset)
        for row in rows:
            if row.created_at < midnight:
                return total
            total += task_cost(store, caps, row)
        if len(rows) < PAGE:
            return total
        offset += PAGE


def spent_by(store: HistoryStore, caps: Capabilities, local_ids: Iterable[str]) -> float:
    """Units of the given tasks (a session's)."""
    total = 0.0
    for local_id in local_ids:
        record = store.get(local_id)
        if record is None or record.status == "not_created":
            continue
        if record.status in ("succeed", "failed"):
            total += _units(record.units)
        else:
            total += price(caps, record.kind, record.params).units
    return total


@dataclass(frozen=True)
class Overrun:
    """A submit that would pass a budget, with the figures."""

    budget: str  # "daily" | "session"
    limit: float
    spent: float
    estimate: float

    def __str__(self) -> str:
        period = "today" if self.budget == "daily" else "this session"
        return (
            f"the {self.budget} budget is {self.limit:g} units: {self.spent:g} spent {period} "
            f"+ about {self.estimate:g} for this submit = {self.spent + self.estimate:g}"
        )


def over_budget(settings: Settings, estimate: float, *, today: float, session: float) -> list[Overrun]:
    """The budgets (config [budget]) this submit would pass; empty when none is set or all hold."""
    found = []
    for name, limit, spent in (("daily", settings.budget_daily, today), ("session", settings.budget_session, session)):
        if limit is not None and spent + estimate > limit:
            found.append(Overrun(name, limit, spent, estimate))
    return found
