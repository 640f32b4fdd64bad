"""Counts the packages `pip install -e .` pulls into a fresh venv (the footprint bar of issue 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["count_packages"]


def _pip_list(venv: Path) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json",
                          "--disable-pip-version-check"], check=True, capture_output=True, text=True).stdout
    return {p["name"].lower() for p in json.loads(out)}


def count_packages(repo: Path) -> dict[str, object]:
    """Fresh venv, `pip install -e <repo>`, then `pip list` minus what the bare venv already had."""
    with tempfile.TemporaryDirectory(prefix="switchboard-pkgcount-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        bootstrap = _pip_list(venv)  # pip (and setuptools on older Pythons)
        install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                  "--disable-pip-version-check", "-e", str(repo)], capture_output=True, text=True)
        if install.returncode != 0:
            raise RuntimeError(f"pip install -e {repo} failed:\n{install.stdout}{install.stderr}")
        pulled = sorted(_pip_list(venv) - bootstrap)
    return {"count": len(pulled), "packages": pulled, "bootstrap": sorted(bootstrap)}


if __name__ == "__main__":
    result = count_packages(Path(__file__).resolve().parent.parent)
    print(json.dumps(result, indent=2))
