"""Prompt templates: `{a|b|c}` alternatives and `{{name}}` variables, filled into plain prompts.

- `{red|green|blue}`: one task per alternative. Alternatives are trimmed; an empty one stands
  for nothing (`a {very|} big dog`), and the doubled space it would leave is closed up.
- `{{name}}`: a variable (letters, digits, `_` and `-`), its values given apart from the
  prompt; used twice, it takes the same value in both places.
- `\\{`, `\\}`, `\\|` and `\\\\` are a literal brace, bar and backslash; any other backslash is kept.
- `{word}` with no bar is refused: it is almost always a `{{word}}` missing a brace.

Cartesian by default (every combination, the first slot changing slowest); zipped, the n-th
values of every slot go together and a slot with one value goes with all.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kling_tui.api.errors import Problem

MAX_TASKS = 500  # a template may fan out to this many tasks at most (variants included)
FIELD = "prompt"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_ESCAPABLE = "{}|\\"


@dataclass(frozen=True)
class Slot:
    """A place in the template a value goes: `{{name}}` (key "name") or the n-th `{…|…}` (key "{n}")."""

    key: str
    options: tuple[str, ...] = ()  # an alternative's choices; a variable's come from outside

    @property
    def is_variable(self) -> bool:
        return not self.key.startswith("{")

    @property
    def label(self) -> str:
        return f"{{{{{self.key}}}}}" if self.is_variable else self.key


@dataclass(frozen=True)
class Template:
    body: str
    parts: tuple[str | Slot, ...]

    @property
    def slots(self) -> list[Slot]:
        """Each slot once, in the order the prompt first uses it."""
        return list({p.key: p for p in self.parts if isinstance(p, Slot)}.values())

    @property
    def variables(self) -> list[str]:
        return [s.key for s in self.slots if s.is_variable]

    @property
    def is_template(self) -> bool:
        return any(isinstance(p, Slot) for p in self.parts)


@dataclass(frozen=True)
class Filling:
    """One prompt the template makes, and the value each slot took."""

    prompt: str
    values: tuple[tuple[str, str], ...]


def parse(body: str) -> tuple[Template, list[Problem]]:
    """The template in `body`, and what is wrong with its syntax (never raises)."""
    parts: list[str | Slot] = []
    problems: list[Problem] = []
    text: list[str] = []
    choices = 0
    i = 0
    # Stops at the first problem: what follows a broken brace is read wrongly anyway.
    while i < len(body) and not problems:
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPABLE:
            text.append(body[i + 1])
            i += 2
        elif body.startswith("{{", i):
            end = body.find("}}", i + 2)
            if end < 0:
                problems.append(Problem(FIELD, f"{_near(body, i)}: {{{{ is never closed with }}}}"))
                text.append(body[i:])
                break
            name = body[i + 2 : end].strip()
            if _NAME.match(name):
                parts += ["".join(text), Slot(name)]
                text = []
            else:
                problems.append(
                    Problem(
                        FIELD, f"{{{{{name}}}}} is not a variable name (letters, digits, _ and -, not first a digit)"
                    )
                )
            i = end + 2
        elif ch == "{":
            options, end, problem = _alternatives(body, i)
            if problem:
                problems.append(Problem(FIELD, problem))
            else:
                choices += 1
                parts += ["".join(text), Slot(f"{{{choices}}}", options)]
                text = []
            if end < 0:
                break
            i = end + 1
        elif ch == "}":
            problems.append(
                Problem(FIELD, f"{_near(body, i)}: }} without an opening {{ (write \\}} for a literal brace)")
            )
            i += 1
        else:
            text.append(ch)
            i += 1
    parts.append("".join(text))
    return Template(body, tuple(p for p in parts if p != "")), problems


def _alternatives(body: str, start: int) -> tuple[tuple[str, ...], int, str]:
    """The choices of the `{…|…}` at `start`, the index of its `}` (-1: none) and a problem."""
    options: list[str] = []
    current: list[str] = []
    i = start + 1
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPABLE:
            current.append(body[i + 1])
            i += 2
            continue
        if ch == "{":
            end = body.find("}", i)
            return (), end, f"{_near(body, start)}: alternatives cannot contain {{ (write \\{{ for a literal brace)"
        if ch == "}":
            options.append("".join(current).strip())
            if len(options) == 1:
                word = body[start + 1 : i]
                if not word.strip():
                    return (), i, "{} is empty: write {a|b} for alternatives or \\{ for a literal brace"
                return (
                    (),
                    i,
                    (
                        f"{{{word}}} has one alternative: write {{{{{word.strip()}}}}} for a variable, "
                        "{a|b} for alternatives or \\{ for a literal brace"
                    ),
                )
            return tuple(options), i, ""
        if ch == "|":
            options.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    return (), -1, f"{_near(body, start)}: {{ is never closed with }} (write \\{{ for a literal brace)"


def _near(body: str, index: int) -> str:
    snippet = " ".join(body[index : index + 12].split())
    return f"at “{snippet}{'…' if len(body) > index + 12 else ''}”"


_LOOSE_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}")


def variables_in(body: str) -> tuple[list[str], int]:
    """The variable names of `body` and its number of slots; while a brace is still being typed
    (a syntax problem), the `{{name}}` found anyway, so that rows do not come and go."""
    template, found = parse(body)
    if found:
        names = list(dict.fromkeys(_LOOSE_VARIABLE.findall(body)))
        return names, len(names)
    return template.variables, len(template.slots)


def split_values(text: str) -> list[str]:
    """Comma-separated values, each trimmed, empty ones dropped; `\\,` is a comma inside a value."""
    values: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("\\,", i):
            current.append(",")
            i += 2
            continue
        if text[i] == ",":
            values.append("".join(current).strip())
            current = []
        else:
            current.append(text[i])
        i += 1
    values.append("".join(current).strip())
    return [v for v in values if v]


def parse_assignment(text: str) -> tuple[str, list[str]]:
    """`name=a,b` (the CLI's --var) as (name, values); raises ValueError saying what is wrong."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep:
        raise ValueError(f"must be NAME=VALUE,VALUE… (got {text!r})")
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a variable name (letters, digits, _ and -, not first a digit)")
    return name, split_values(values)


def _choices(template: Template, values: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    return [s.options if not s.is_variable else tuple(values.get(s.key, ())) for s in template.slots]


def count(template: Template, values: Mapping[str, Sequence[str]], *, zipped: bool = False) -> int:
    """How many prompts `fill` makes (without making them)."""
    lengths = [len(c) for c in _choices(template, values)]
    if zipped:
        return 0 if 0 in lengths else max(lengths, default=1)
    return math.prod(lengths)


def problems(template: Template, values: Mapping[str, Sequence[str]], *, zipped: bool = False) -> list[Problem]:
    """What stops the template being filled: a variable with no values, zipped slots of
    different lengths, too many prompts."""
    found = [
        Problem(f"{{{{{name}}}}}", "is used in the prompt but has no values")
        for name in template.variables
        if not values.get(name)
    ]
    if found:
        return found
    if zipped:
        lengths = {s.label: len(c) for s, c in zip(template.slots, _choices(template, values)) if len(c) > 1}
        if len(set(lengths.values())) > 1:
            counts = ", ".join(f"{label} has {n}" for label, n in lengths.items())
            found.append(Problem(FIELD, f"zipped slots need the same number of values ({counts})"))
            return found
    total = count(template, values, zipped=zipped)
    if total > MAX_TASKS:
        found.append(too_many(total))
    return found


def unused(names: Iterable[str]) -> list[Problem]:
    """Values given for variables no prompt uses: a typo, most likely."""
    return [Problem(f"{{{{{name}}}}}", "has values but the prompt never uses it") for name in names]


def too_many(total: int) -> Problem:
    return Problem(FIELD, f"makes {total} tasks, more than the {MAX_TASKS} one submit may send")


def fill(template: Template, values: Mapping[str, Sequence[str]], *, zipped: bool = False) -> list[Filling]:
    """Every prompt the template makes. Check `problems` first: a slot without values makes none."""
    slots = template.slots
    choices = _choices(template, values)
    if zipped:
        length = count(template, values, zipped=True)
        rows: Iterable[tuple[str, ...]] = (tuple(c[i] if len(c) > 1 else c[0] for c in choices) for i in range(length))
    else:
        rows = itertools.product(*choices)
    out = []
    for row in rows:
        chosen = {slot.key: value for slot, value in zip(slots, row)}
        out.append(Filling(_render(template.parts, chosen), tuple(chosen.items())))
    return out


def _render(parts: Sequence[str | Slot], chosen: Mapping[str, str]) -> str:
    text = ""
    close_up = False  # an empty value between two spaces leaves one of them
    for part in parts:
        if isinstance(part, Slot):
            value = chosen[part.key]
            close_up = not value and text[-1:].isspace()
            text += value
        else:
            text += part[1:] if close_up and part[:1].isspace() else part
            close_up = False
    return text


def plain_prompt(body: str) -> str:
    """A prompt with no slots, its escapes resolved (`\\{` is `{`)."""
    template, _ = parse(body)
    return "".join(p for p in template.parts if isinstance(p, str))


def escape(text: str) -> str:
    """`text` as a template that makes exactly it: for a sent prompt put back in the form."""
    if "{" not in text and "}" not in text and "\\" not in text:
        return text
    out = []
    for i, ch in enumerate(text):
        if ch in "{}" or (ch == "\\" and text[i + 1 : i + 2] in tuple(_ESCAPABLE)):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def describe_values(values: Iterable[tuple[str, str]]) -> str:
    """`animal=cat · {1}=red`: how `show` and the form name a task's template values."""
    return " · ".join(f"{key}={value}" for key, value in values)
