"""An MCP server for the example agent of `switchboard init`: a calculator and a clock.

Written with the official `mcp` SDK (FastMCP, a dependency of Switchboard); Switchboard starts it
over stdio as the agent's front matter says (`mcp: {toolbox: {command: python, args: [toolbox.py]}}`).
Add a tool: write a typed function with a docstring and decorate it with `@server.tool()`.
"""

from __future__ import annotations

import ast
import datetime
import operator
from collections.abc import Callable

from mcp.server.fastmcp import FastMCP

server = FastMCP("toolbox")

_OPERATORS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        if isinstance(node.op, ast.Pow) and abs(_evaluate(node.right)) > 100:
            raise ValueError("exponent too large")
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError("only numbers, parentheses and + - * / ** % are allowed")


@server.tool()
def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression such as `(2 + 3) * 4.5`."""
    value = _evaluate(ast.parse(expression, mode="eval"))
    return str(int(value) if isinstance(value, float) and value.is_integer() else value)


@server.tool()
def current_time() -> str:
    """The current local date and time (ISO 8601, with the UTC offset)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


if __name__ == "__main__":
    server.run()
