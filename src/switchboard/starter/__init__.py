"""`switchboard init`: the starter files (this package's data) and writing them without overwriting any.

The files: `switchboard.yaml` (commented; providers from the environment), `agents/assistant.md` (an
agent declaring its own MCP server in its front matter) and `agents/toolbox.py` (that server, a
module of this package so it is linted and type-checked like the rest).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["STARTER_FILES", "write_starter"]

# where it is written (relative to the target directory) -> the file of this package
STARTER_FILES = {
    "switchboard.yaml": "switchboard.yaml",
    "agents/assistant.md": "assistant.md",
    "agents/toolbox.py": "toolbox.py",
}


def write_starter(directory: Path) -> list[tuple[str, bool]]:
    """Write each starter file that does not exist yet; (relative path, written) for each, in order."""
    package = resources.files(__name__)
    results: list[tuple[str, bool]] = []
    for target, name in STARTER_FILES.items():
        path = directory / target
        if path.exists() or path.is_symlink():
            results.append((target, False))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        text = package.joinpath(name).read_text(encoding="utf-8")
        with open(path, "x", encoding="utf-8") as out:  # "x": never replaces a file created meanwhile
            out.write(text)
        results.append((target, True))
    return results
