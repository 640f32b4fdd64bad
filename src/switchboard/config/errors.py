"""Config errors: `ConfigError` (a problem with the file, key path and line in its message) and
`_Problems`, the errors of one file collected as reading goes on past each, so one run reports them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class ConfigError(Exception):
    """A config problem, with the key path and line it concerns in the message (`file:line: message`).

    `errors` lists every problem found in one file (the message is those lines joined), `line` is
    the line of the first one (0: no line).
    """

    def __init__(self, message: str, line: int = 0, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.errors = errors if errors is not None else [message]


class _Problems:
    """The errors found so far in one file: reading goes on past one, so a run reports them all."""

    def __init__(self) -> None:
        self.found: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        if all(str(error) != str(seen) for seen in self.found):
            self.found.append(error)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run one entry's reading; an error is recorded and reading goes on with the next entry."""
        try:
            yield
        except ConfigError as exc:
            self.add(exc)

    def raise_any(self, by_line: bool = True) -> None:
        """Raise what was found, if anything: one error as is, several as one `ConfigError` listing them."""
        if not self.found:
            return
        # stable: errors of one line keep their reading order; without `by_line` (several files), reading order
        ordered = sorted(self.found, key=lambda e: e.line or 1 << 30) if by_line else self.found
        if len(ordered) == 1:
            raise ordered[0]
        messages = [m for e in ordered for m in e.errors]
        raise ConfigError("\n".join(messages), ordered[0].line, messages)
