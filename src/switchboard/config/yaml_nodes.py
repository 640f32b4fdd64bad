"""The YAML layer of the config: loading a document into `_Node`s that keep the line each value came
from, `${VAR}` / `${VAR:-default}` expansion (a plain scalar's type re-resolved after it), duplicate
keys as errors, PyYAML's errors as `file:line` messages, and `_plain` (a node tree without its lines).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import ConfigError, _Problems

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Node:
    """A loaded YAML value with the line it came from."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


def _expand(text: str, environ: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        value = environ.get(m.group(1))
        if value is None or (value == "" and m.group(2) is not None):
            return m.group(2) if m.group(2) is not None else ""
        return value

    return _VAR.sub(sub, text)


def _yaml_error(exc: yaml.YAMLError, source: str) -> ConfigError:
    """`file:line: invalid YAML (column N): what`, from PyYAML's marks (0-based)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "syntax error"
        if exc.context and exc.context_mark is not None and exc.context_mark.line != mark.line:
            what += f" ({exc.context} at line {exc.context_mark.line + 1})"
        elif exc.context:
            what = f"{exc.context}: {what}"
        return ConfigError(f"{source}:{mark.line + 1}: invalid YAML (column {mark.column + 1}): {what}",
                           mark.line + 1)
    return ConfigError(f"{source}: invalid YAML: {exc}")


def _load_nodes(text: str, source: str, environ: dict[str, str], problems: _Problems | None = None) -> _Node:
    """The YAML tree with lines; a duplicate key is an error (recorded in `problems` if given: the first wins)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, source) from None
    finally:
        loader.dispose()
    if root is None:
        return _Node({}, 1)

    def convert(node: yaml.Node) -> _Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[str, _Node] = {}
            for key_node, value_node in node.value:
                key = convert(key_node).value
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    duplicate = ConfigError(f"{source}:{key_node.start_mark.line + 1}: duplicate key `{key}`",
                                            key_node.start_mark.line + 1)
                    if problems is None:
                        raise duplicate
                    problems.add(duplicate)
                    continue
                out[key] = convert(value_node)
            return _Node(out, line)
        if isinstance(node, yaml.SequenceNode):
            return _Node([convert(item) for item in node.value], line)
        assert isinstance(node, yaml.ScalarNode)
        raw = node.value
        if "${" in raw:
            raw = _expand(raw, environ)
            if node.style is None:  # plain scalar: re-resolve its type after expansion (`port: ${PORT}`)
                # PyYAML's stubs leave Resolver.resolve unannotated; it returns the tag string.
                tag: str = yaml.SafeLoader.resolve(  # type: ignore[no-untyped-call]
                    loader, yaml.ScalarNode, raw, (True, False))
                node = yaml.ScalarNode(tag, raw, node.start_mark, node.end_mark, node.style)
            else:
                node = yaml.ScalarNode(node.tag, raw, node.start_mark, node.end_mark, node.style)
        return _Node(loader.construct_object(node, deep=True), line)

    return convert(root)



def _plain(node: _Node) -> Any:
    """A loaded YAML value without its line numbers."""
    value = node.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
