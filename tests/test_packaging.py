"""The package as a user installs it: a wheel that pip's resolver installs with its declared
requirements into a fresh virtual environment, with no checkout on the path and no extras, gives
the console commands and the shipped sequence configs, and trains, predicts and builds tables end
to end; a command that needs a missing extra (optuna, matplotlib) names it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from ctr_plugin.errors import CTRError

from conftest import keyword_task
from test_cli import TINY, task_csv, write_csv

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


def test_ctr_tune_without_optuna_names_the_extra_to_install_and_its_summary_still_works(tmp_path, monkeypatch, capsys):
    from ctr_plugin.commands import tune

    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` fails as if it were not installed
    argv = ["--config", "hl5_products", "--methods", "ctr", "--storage", str(tmp_path / "study.journal")]
    with pytest.raises(CTRError, match=re.escape("pip install 'ctr_plugin[tune]'")):
        tune.main([*argv, "--output", str(tmp_path / "tuned.yaml")])
    assert not (tmp_path / "study.journal").exists() and not (tmp_path / "tuned.yaml").exists()
    assert tune.main(["--config", "hl5_products", "--summary"]) == 0  # reads the shipped file: no Optuna needed
    assert "| ctr |" in capsys.readouterr().out


def test_a_run_without_matplotlib_saves_everything_but_the_figures_and_says_how_to_draw_them(
    tiny_bert_dir, tmp_path, monkeypatch, caplog
):
    from ctr_plugin.commands import train
    from ctr_plugin.reporting.run_report import pyplot

    for module in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(CTRError, match=re.escape("pip install 'ctr_plugin[plots]'")):
        pyplot()
    files = [task_csv(tmp_path, "sentiment", [["good", "great"], ["bad", "awful"]])]
    argv = ["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(tmp_path / "run"), *TINY]
    assert train.main(argv) == 0
    run = tmp_path / "run"
    assert (run / "results.json").is_file() and (run / "checkpoint").is_dir() and not list(run.glob("*.png"))
    assert "No figures drawn: matplotlib is not installed" in caplog.text and "ctr_plugin[plots]" in caplog.text


def test_py_typed_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["ctr_plugin"] and (ROOT / "ctr_plugin" / "py.typed").is_file()


def _build_wheel(tmp_path: Path) -> Path:
    source = tmp_path / "source"  # built from a copy: the build leaves build/ and *.egg-info behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            (source / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("ctr_plugin", "data_configs"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*pip_wheel, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("ctr_plugin-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A virtual environment of its own (no system or developer site-packages) into which pip's
    resolver installs the wheel and its declared requirements from the package index, as a user's
    `pip install ctr_plugin` does. torch goes in first, at this interpreter's version (a CPU build
    where pip finds one, as on this project's machines; CTR_TEST_TORCH gives other pip arguments,
    e.g. PyTorch's CPU index), so that the resolver never pulls a multi-GB CUDA build."""
    import torch

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    torch_args = os.environ.get("CTR_TEST_TORCH", f"torch=={torch.__version__.split('+')[0]}").split()
    for step in (torch_args, [str(wheel)]):
        proc = subprocess.run([*pip, *step], capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


@pytest.mark.wheel
def test_the_wheel_installed_by_pips_resolver_trains_predicts_and_builds_tables_without_extras(
    tiny_bert_dir, tmp_path
):
    wheel = _build_wheel(tmp_path)
    assert "ctr_plugin/py.typed" in zipfile.ZipFile(wheel).namelist()  # PEP 561
    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "work"  # no checkout here, and none on the path
    work.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HOME": str(tmp_path),
    }

    def run(*argv: str, status: int = 0) -> str:
        proc = subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == status, proc.stderr[-3000:]
        return proc.stdout if status == 0 else " ".join(proc.stderr.split())

    run("python", "-m", "pip", "check")  # the resolved versions satisfy every declared requirement
    where = json.loads(
        run(
            "python",
            "-c",
            "import ctr_plugin, json, sys, transformers, peft, importlib.util as u; "
            "from ctr_plugin.data import resolve_config; print(json.dumps("
            "[ctr_plugin.__file__, str(resolve_config('hl5_products')), str(resolve_config('hl5_products', 'tuned')), "
            "transformers.__file__, peft.__file__, sys.path, "
            "[u.find_spec(m) is None for m in ('optuna', 'matplotlib')]]))",
        )
    )
    package, config, tuned, transformers_file, peft_file, path, extras_missing = where
    for file in (package, config, tuned, transformers_file, peft_file):  # nothing borrowed from another environment
        assert Path(file).is_relative_to(venv), where
    assert extras_missing == [True, True]  # the core requirements only: no [tune], no [plots]
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
    assert "final_acc=" in out and (work / "run" / "checkpoint").is_dir()
    assert not list((work / "run").glob("*.png"))  # no matplotlib: the figures are skipped, the run is not
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
    assert not list((work / "grid").glob("*.png"))
    refusal = run("ctr-tune", "--config", "tiny.yaml", "--tasks", "2", "--encoder", tiny_bert_dir, status=2)
    assert "pip install 'ctr_plugin[tune]'" in refusal, refusal


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
