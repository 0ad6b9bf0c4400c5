"""Parsed CSS kept between runs.

Textual parses the CSS of the app and of every widget class at each start: for this app about
250 rule sets, a tenth of the time to the first frame. The rule sets depend only on the CSS
text, where it came from, the theme's variables and Textual itself, so they are kept, pickled,
in the cache folder and read back in a fraction of that time. Anything amiss with the file
(missing, damaged, another Textual or theme) means parsing as usual and writing it afresh.
The file is the user's own, like the bytecode Python caches beside the code it runs.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import textual
from textual.css.stylesheet import Stylesheet

from kling_tui.base.atomic import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "parsed-css.pickle"
FORMAT = 1  # bump when what is stored changes shape


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
        self._kept: dict[tuple, Any] | None = None  # read on first use
        self._kept_for: dict[str, str] = {}  # the variables they were parsed with
        self.dirty = False  # rule sets parsed that the file lacks

    def _stamp(self) -> tuple:
        return (FORMAT, _textual_files(), self._variables)

    def _kept_rules(self) -> dict[tuple, Any]:
        if self._kept is None or self._kept_for != self._variables:
            self._kept, self._kept_for = self._read(), dict(self._variables)
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
        rules = kept.get(key)
        if rules is None:
            rules = super()._parse_rules(css, read_from, is_default_rules, tie_breaker, scope)
            if not any(rule.errors for rule in rules):  # errors are reported, never kept
                kept[key] = rules
                self.dirty = True
        return rules

    def save(self) -> None:
        """Write the rule sets parsed so far, if the file lacks some. Never fails the app."""
        if not self.dirty or self.path is None or self._kept is None:
            return
        try:
            data = pickle.dumps((self._stamp(), self._kept), protocol=pickle.HIGHEST_PROTOCOL)
            write_atomic(self.path, data, durable=False)
        except Exception as exc:  # a full disk or an unpicklable rule: parse again next time
            log.info("parsed CSS not kept (%s): %s", self.path, exc)
            return
        self.dirty = False
