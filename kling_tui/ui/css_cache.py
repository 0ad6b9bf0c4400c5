"""Parsed CSS kept between runs.

Textual parses the CSS of the app and of every widget class at each start: for this app about
250 rule sets, a tenth of the time to the first frame. The rule sets depend only on the CSS
text, where it came from, the theme's variables and Textual itself, so they are kept, pickled,
in the cache folder and read back in a fraction of that time. Each rule set is unpickled
when first asked for, so a start pays for the CSS of what it shows, not of every dialog seen
before; a rule set whose CSS has since changed (or whose file is gone) is dropped when the file
is next written. Anything amiss with the file (missing, damaged, another Textual or theme)
means parsing as usual and writing it afresh. The file is the user's own, like the bytecode
Python caches beside the code it runs.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import textual
from textual.css.stylesheet import Stylesheet

from kling_tui.base.atomic import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "parsed-css.pickle"
FORMAT = 2  # bump when what is stored changes shape


def _textual_files() -> tuple:
    """Which Textual parsed the rules: the files that define them, by path, size and time.
    (`textual.__version__` reads the package metadata, which costs more than the cache saves.)"""
    here = Path(textual.__file__).parent
    stamp: tuple = ()
    for name in ("css/model.py", "css/styles.py", "css/parse.py"):
        stat = (here / name).stat()
        stamp += (str(here / name), stat.st_size, stat.st_mtime_ns)
    return stamp


class CachedStylesheet(Stylesheet):
    """A Stylesheet that takes rule sets parsed by an earlier run from `path`."""

    def __init__(self, path: Path | None, *, variables: dict[str, str] | None = None) -> None:
        super().__init__(variables=variables)
        self.path = path
        # Rule sets by (css, read_from, is_default_rules, tie_breaker, scope): pickled bytes
        # as read, the rules themselves once asked for. Read on first use.
        self._kept: dict[tuple, Any] | None = None
        self._kept_for: dict[str, str] = {}  # the variables they were parsed with
        self._used: set[tuple] = set()  # keys asked for in this run
        self.dirty = False  # rule sets parsed that the file lacks

    def _stamp(self) -> tuple:
        return (FORMAT, _textual_files(), self._variables)

    def _kept_rules(self) -> dict[tuple, Any]:
        if self._kept is None or self._kept_for != self._variables:
            self._kept, self._kept_for = self._read(), dict(self._variables)
            self._used = set()
        return self._kept

    def _read(self) -> dict[tuple, Any]:
        if self.path is None:
            return {}
        try:
            stamp, rules = pickle.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except Exception as exc:  # damaged or of another version: parse instead
            log.info("parsed CSS not reused (%s): %s", self.path, exc)
            return {}
        return rules if stamp == self._stamp() and isinstance(rules, dict) else {}

    def _parse_rules(
        self,
        css: str,
        read_from: Any,
        is_default_rules: bool = False,
        tie_breaker: int = 0,
        scope: str = "",
    ) -> list:
        key = (css, read_from, is_default_rules, tie_breaker, scope)
        kept = self._kept_rules()
        self._used.add(key)
        rules = kept.get(key)
        if isinstance(rules, bytes):
            rules = kept[key] = self._unpickle(rules)
        if rules is None:
            rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
            if not any(rule.errors for rule in rules):  # errors are reported, never kept
                kept[key] = rules
                self.dirty = True
        return rules

    @staticmethod
    def _unpickle(data: bytes) -> list | None:
        try:
            rules = pickle.loads(data)
        except Exception as exc:  # damaged: parse instead
            log.info("a parsed rule set not reused: %s", exc)
            return None
        return rules if isinstance(rules, list) else None

    def _current(self) -> dict[tuple, bytes]:
        """What the file should hold: the rule sets of this run, and those of earlier runs
        whose source this run did not read again (with other CSS) and that still exists."""
        superseded = {key[1:] for key in self._used}
        entries: dict[tuple, bytes] = {}
        for key, rules in (self._kept or {}).items():
            if key not in self._used and (key[1:] in superseded or not _source_exists(key[1])):
                continue
            entries[key] = rules if isinstance(rules, bytes) else pickle.dumps(rules, protocol=pickle.HIGHEST_PROTOCOL)
        return entries

    def save(self) -> None:
        """Write the rule sets parsed so far, if the file lacks some. Never fails the app."""
        if not self.dirty or self.path is None or self._kept is None:
            return
        try:
            data = pickle.dumps((self._stamp(), self._current()), protocol=pickle.HIGHEST_PROTOCOL)
            write_atomic(self.path, data, durable=False)
        except Exception as exc:  # a full disk or an unpicklable rule: parse again next time
            log.info("parsed CSS not kept (%s): %s", self.path, exc)
            return
        self.dirty = False


def _source_exists(read_from: Any) -> bool:
    """Whether the file a rule set was read from is still there (CSS given inline counts)."""
    path = read_from[0] if isinstance(read_from, tuple) and read_from else None
    return not path or os.path.exists(path)
