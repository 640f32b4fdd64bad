"""`_Section`: typed reading of one YAML mapping of the config. Each getter checks the type (and sign)
of a key, reports a wrong optional value and goes on with its default, and `done()` makes every key
nobody read an error, naming the closest known key. Every section reader is written against it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, _Problems
from .yaml_nodes import _Node


class _Section:
    """Reads one mapping, checking types; `done()` rejects keys nobody read.

    With `problems`, a wrong value of an optional key is recorded there and its default used, so
    reading goes on; errors that leave nothing to go on with (a required key, a non-mapping) raise.
    """

    def __init__(self, node: _Node, path: str, source: str, problems: _Problems | None = None) -> None:
        self.source = source
        self.path = path
        self.line = node.line
        self.problems = problems
        if node.value is None:
            node = _Node({}, node.line)
        if not isinstance(node.value, dict):
            raise self.error(node, f"`{path}` must be a mapping")
        self.items: dict[str, _Node] = node.value
        self.seen: set[str] = set()

    def error(self, node: _Node | None, message: str) -> ConfigError:
        line = node.line if node is not None else self.line
        return ConfigError(f"{self.source}:{line}: {message}", line)

    def report(self, node: _Node | None, message: str) -> None:
        """An error after which reading can go on: recorded (raised when there is no `problems`)."""
        error = self.error(node, message)
        if self.problems is None:
            raise error
        self.problems.add(error)

    def sub(self, node: _Node, path: str) -> _Section:
        return _Section(node, path, self.source, self.problems)

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def node(self, name: str) -> _Node | None:
        self.seen.add(name)
        return self.items.get(name)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        node = self.node(name)
        if node is None or node.value is None:
            if required:
                typo = difflib.get_close_matches(name, [k for k in self.items if k not in self.seen], n=1)
                if typo:
                    raise self.error(self.items[typo[0]], f"unknown key `{self.key(typo[0])}` (did you mean `{name}`?)")
                raise self.error(node, f"`{self.key(name)}` is required")
            return default
        value = node.value
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            message = f"`{self.key(name)}` must be {names}, got {type(value).__name__}"
            if required:
                raise self.error(node, message)
            self.report(node, message)
            return default
        return value

    def str_list(self, name: str, default: list[str] | None = None) -> list[str] | None:
        node = self.node(name)
        if node is None or node.value is None:
            return default
        if isinstance(node.value, str):
            return [node.value]
        if not isinstance(node.value, list) or not all(isinstance(i.value, str) for i in node.value):
            self.report(node, f"`{self.key(name)}` must be a list of strings")
            return default
        return [i.value for i in node.value]

    def str_map(self, name: str) -> dict[str, str]:
        node = self.node(name)
        if node is None or node.value is None:
            return {}
        sub = self.sub(node, self.key(name))
        out: dict[str, str] = {}
        for k, v in sub.items.items():
            if v.value is None:
                continue
            if not isinstance(v.value, str | int | float | bool):
                sub.report(v, f"`{sub.key(k)}` must be a string")
                continue
            out[k] = str(v.value)
        return out

    def section(self, name: str) -> _Section:
        node = self.node(name)
        return self.sub(node if node is not None else _Node({}, self.line), self.key(name))

    def positive(self, name: str, kind: type, default: Any, allow_zero: bool = False) -> Any:
        value = self.get(name, kind, default)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            self.report(self.items.get(name), f"`{self.key(name)}` must be {'>= 0' if allow_zero else '> 0'}")
            return default
        return value

    def done(self, also_known: Iterable[str] = ()) -> None:
        """Every key nobody read is an error (with the closest key that exists, if one is close; keys
        valid here but not read, such as an agent file's chat parameters, are `also_known`)."""
        known = sorted({*self.seen, *also_known})
        for name, node in self.items.items():
            if name not in self.seen:
                typo = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean `{typo[0]}`?)" if typo else ""
                self.report(node, f"unknown key `{self.key(name)}`{hint}")
