"""A small MCP server for the Switchboard quickstart: a calculator and a notes book.

Written with the official `mcp` SDK (1.x, FastMCP). Runs over stdio by default (Switchboard starts
it as a child process); `--http PORT` serves Streamable HTTP on 127.0.0.1:PORT/mcp instead.
Notes are kept in memory (or in the JSON file named by NOTES_FILE, so they survive restarts).

    mcp:
      servers:
        notes: {command: python, args: [examples/mcp/notes_server.py]}
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import os
from pathlib import Path

from mcp.server.fastmcp import FastMCP

server = FastMCP("notes")
_NOTES: dict[str, str] = {}
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos}


def _store() -> Path | None:
    name = os.environ.get("NOTES_FILE")
    return Path(name) if name else None


def _load() -> dict[str, str]:
    path = _store()
    if path is not None and path.exists():
        return dict(json.loads(path.read_text()))
    return _NOTES


def _save(notes: dict[str, str]) -> None:
    path = _store()
    if path is not None:
        path.write_text(json.dumps(notes, indent=2))
    else:
        _NOTES.update(notes)


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError("only numbers and + - * / ** % are allowed")


@server.tool()
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression such as `(2 + 3) * 4.5`."""
    value = _eval(ast.parse(expression, mode="eval"))
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


@server.tool()
def save_note(title: str, text: str) -> str:
    """Save (or replace) a note under a title."""
    notes = _load()
    notes[title] = text
    _save(notes)
    return f"saved note {title!r} ({len(text)} characters)"


@server.tool()
def list_notes() -> list[str]:
    """The titles of all notes."""
    return sorted(_load())


@server.tool()
def read_note(title: str) -> str:
    """The text of one note."""
    notes = _load()
    if title not in notes:
        raise ValueError(f"no note titled {title!r}; existing: {', '.join(sorted(notes)) or 'none'}")
    return notes[title]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http:
        server.settings.port = args.http
        server.run("streamable-http")
    else:
        server.run()


if __name__ == "__main__":
    main()
