"""What made a result: the versions of this package and of the libraries that shape its numbers,
and the git commit of the source when it runs from a checkout.

Recorded in every ``results.json`` and checkpoint config (``provenance``), so a table can say what
produced each of its rows.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from ctr_plugin._version import __version__

# The libraries whose version can change a run's numbers (kernels, initialisation, schedules).
LIBRARIES = ("torch", "transformers", "peft", "accelerate")


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def git_commit() -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout this package runs from, or None when it
    runs from an installed copy (or git is missing). ``dirty``: tracked files differ from the commit."""
    package = Path(__file__).resolve().parents[1]  # ctr_plugin/

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if (top / package.name).resolve() != package:  # a git repository that merely contains an installed copy
            return None
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Versions of ctr_plugin, Python and :data:`LIBRARIES`, and the git commit (None if none)."""
    return {
        "ctr_plugin": __version__,
        "python": platform.python_version(),
        **{name: _installed(name) for name in LIBRARIES},
        "git": git_commit(),
    }
