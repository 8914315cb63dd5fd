"""The package as a user installs it: a wheel in a fresh virtual environment, with no checkout on
the path, gives the console commands and the shipped sequence configs, and trains, predicts and
builds tables end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from conftest import keyword_task
from test_cli import write_csv

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["ctr-train", "ctr-predict", "ctr-tables", "ctr-tune", "ctr-relabel", "ctr-bench"]


def test_pyproject_lists_every_package_of_the_source_tree():
    """pyproject.toml lists the packages by hand (to map data_configs/ into the wheel): a new
    subpackage missing from the list would be missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ctr_plugin").rglob("*.py")
    }  # namespace packages too
    assert listed == on_disk | {"ctr_plugin.data_configs"}


def test_a_shipped_config_is_found_by_name_and_by_path(tmp_path, monkeypatch):
    from ctr_plugin.data import load_sequence_config, resolve_config, shipped_sequences
    from ctr_plugin.errors import DataError

    assert {"hl5_products", "offline_mix", "asc19", "dsc10", "20news10"} <= set(shipped_sequences())
    by_name = load_sequence_config("hl5_products")
    assert by_name.name == "hl5_products" and by_name.orders_file is not None
    assert resolve_config("hl5_products.yaml") == resolve_config("hl5_products")
    assert resolve_config("hl5_products", kind="tuned").name == "hl5_products.tuned.yaml"
    own = tmp_path / "hl5_products.yaml"  # a file of that name in the working directory wins: it is a path
    own.write_text("tasks: [{name: a, source: bundled, dataset: hl_canon_g3}]\n")
    monkeypatch.chdir(tmp_path)
    assert resolve_config("hl5_products.yaml") == Path("hl5_products.yaml")
    with pytest.raises(DataError, match="no_such_sequence.*hl5_products"):
        resolve_config("no_such_sequence")


def _fresh_venv(tmp_path: Path) -> Path:
    """A virtual environment holding only the wheel built from this checkout. Its dependencies
    (torch, transformers, ...) come from this interpreter's site-packages through a .pth line,
    which puts that folder on the path without running its .pth files, so an editable install of
    the checkout there stays inert."""
    source = tmp_path / "source"  # built from a copy: the build leaves build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            (source / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("ctr_plugin", "data_configs"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("ctr_plugin-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return venv


@pytest.mark.wheel
def test_the_wheel_in_a_fresh_venv_trains_predicts_and_builds_tables(tiny_bert_dir, tmp_path):
    venv = _fresh_venv(tmp_path)
    work = tmp_path / "work"  # no checkout here, and none on the path
    work.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HOME": str(tmp_path),
    }

    def run(*argv: str) -> str:
        proc = subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    where = json.loads(
        run(
            "python",
            "-c",
            "import ctr_plugin, json, sys; from ctr_plugin.data import resolve_config; print(json.dumps("
            "[ctr_plugin.__file__, str(resolve_config('hl5_products')), "
            "str(resolve_config('hl5_products', 'tuned')), sys.path]))",
        )
    )
    package, config, tuned, path = where
    assert (
        Path(package).is_relative_to(venv) and Path(config).is_relative_to(venv) and Path(tuned).is_relative_to(venv)
    ), where
    # no other ctr_plugin on the path ('' is the working directory)
    assert [p for p in path if (Path(p or work) / "ctr_plugin").exists()] == [str(Path(package).parents[1])], path
    assert not list(Path(config).parent.glob("*.journal"))  # the tuning journal is not package data
    for command in COMMANDS:
        assert (venv / "bin" / command).is_file(), command

    files = []
    for name, keywords in (
        ("sentiment", [["good", "great"], ["bad", "awful"]]),
        ("colour", [["red", "pink"], ["blue", "green"]]),
    ):
        task = keyword_task(name, keywords, n_train=40, n_test=20)
        rows = [
            (t, task.label_names[y]) for split in (task.train, task.test) for t, y in zip(split.texts, split.labels)
        ]
        files.append(write_csv(work / f"{name}.csv", rows))
    tiny = ["--encoder", tiny_bert_dir, "--adapter-size", "16", "--epochs", "1", "--lr", "1e-2", "--max-length", "16"]
    out = run("ctr-train", "--datasets", *files, *tiny, "--no-progress", "--output-dir", "run")
    assert "final_acc=" in out
    made_by = json.loads((work / "run" / "results.json").read_text())["provenance"]
    assert (
        made_by["git"] is None
        and made_by["ctr_plugin"]
        == run("python", "-c", "import importlib.metadata as m; print(m.version('ctr_plugin'))").strip()
    )
    out = run("ctr-predict", "--checkpoint", "run/checkpoint", "--task", "colour", "a red cow")
    assert '"task": "colour"' in out

    config = work / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "training": {"adapter_size": 16},
                "tasks": [{"name": Path(f).stem, "source": "files", "train": f} for f in files],
            }
        )
    )
    (work / "tiny.orders.yaml").write_text("orders:\n  - [1, 0]\n")
    out = run(
        "ctr-tables",
        "--config",
        "tiny.yaml",
        "--methods",
        "frozen_heads",
        "--orders",
        "1",
        "--seeds",
        "1",
        "--encoder",
        tiny_bert_dir,
        "--epochs",
        "1",
        "--max-length",
        "16",
        "--output-dir",
        "grid",
    )
    assert "| frozen_heads | 1 |" in out and (work / "grid" / "table.csv").is_file()


def test_the_entry_script_runs_the_training_command_from_anywhere(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_ctr.py"), "--help"],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0 and "--output-dir" in proc.stdout
