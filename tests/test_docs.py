"""The README and docs/*.md point at things that exist, and the README stays a front page.

Every path they name (``ctr_plugin/...``, ``scripts/...``, ``tests/...``, ``data_configs/...``,
``reproducibility/...``, ``benchmarks/...``, ``docs/...``; and a module named inside its room, such as
``plugins/ctr_layer.py`` or ``methods/ctr.py``) exists, and every relative link resolves. The figures the
docs quote are checked in ``test_published_tables.py``. These tests read files only: they do not
import the package.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("ctr_plugin", "scripts", "tests", "benchmarks", "data_configs", "reproducibility", "docs")
ROOMS = {
    "plugins": "plugins",
    "modeling": "modeling",
    "checkpoint": "checkpoint",
    "data": "data",
    "reporting": "reporting",
    "continual": "continual",
    "experiments": "experiments",
    "commands": "commands",
    "bench": "bench",
    "methods": "continual/methods",
}
ROOT_PATH = re.compile(rf"(?<![\w/.<-])((?:{'|'.join(TOP)})/[\w./<>*-]*)")
ROOM_MODULE = re.compile(rf"(?<![\w/.<-])((?:{'|'.join(ROOMS)})/\w+\.py)\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def named_paths(text: str) -> set[str]:
    """Paths from the repository root a text names, placeholders (``<task>``, ``*``) left out."""
    paths = {p.rstrip(".,:;") for p in ROOT_PATH.findall(text)}
    return {p for p in paths if not re.search(r"[<>*]", p)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_path_the_docs_name_exists(doc):
    text = doc.read_text()
    missing = sorted(p for p in named_paths(text) if not (ROOT / p).exists())
    missing += sorted(
        m
        for m in set(ROOM_MODULE.findall(text))
        if not (ROOT / "ctr_plugin" / ROOMS[m.split("/")[0]] / m.split("/", 1)[1]).exists()
    )
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_relative_link_resolves(doc):
    targets = [
        t.split("#")[0] for t in LINK.findall(doc.read_text()) if not re.match(r"[a-z]+:", t) and not t.startswith("#")
    ]
    missing = [t for t in targets if t and not (doc.parent / t).exists()]
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"


def test_the_path_checks_see_the_paths():
    readme = (ROOT / "README.md").read_text()
    assert "ctr_plugin/experiments/settings.py" in named_paths("see `ctr_plugin/experiments/settings.py`.")
    assert not named_paths("DIR/checkpoint/ and reproducibility/<sequence>/runs/")
    assert ROOM_MODULE.findall("`plugins/ctr_layer.py` and `methods/ctr.py`") == [
        "plugins/ctr_layer.py",
        "methods/ctr.py",
    ]
    assert len(LINK.findall(readme)) >= 10


def test_the_readme_is_a_front_page():
    """What it is, where CTR stands and the two set-up commands on the first screen; the reference
    lives in docs/, linked from the README."""
    text = (ROOT / "README.md").read_text()
    first_screen = text[: text.index("\n## ")]
    assert "make demo" in first_screen and "make test" in first_screen
    assert "| sequence | CTR runs |" in first_screen
    assert len(text.splitlines()) <= 150, "the README is a front page; move reference text to docs/"
    linked = {Path(t).name for t in LINK.findall(text) if t.startswith("docs/")}
    assert {d.name for d in DOCS[1:]} <= linked, "every page of docs/ is linked from the README"
