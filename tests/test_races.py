"""Races on an output directory: two writers started together, and lock files nobody can read.

Each round starts two processes that take ``OutputLock`` on one directory at the same moment (a
barrier): exactly one may win, every round. Before the lock was created atomically, the loser
could read the winner's lock file while it was still empty, take it for a stale one, remove it and
win too.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
from pathlib import Path

import pytest

from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.output_dir import LOCK_FILE, OutputLock, check_output_dir, lock_holder

ROUNDS = 20


def _contend(directory: str, barrier, done, results) -> None:
    barrier.wait()
    try:
        lock = OutputLock(directory).acquire()
    except CTRError as err:
        results.put(("refused", str(err)))
        done.wait()
        return
    results.put(("won", os.getpid()))
    done.wait()  # hold the lock until both have tried: a run holds it for its whole life
    lock.release()


def _one_round(directory: Path, ctx) -> list[tuple[str, object]]:
    barrier, done, results = ctx.Barrier(2), ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(directory), barrier, done, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcome = [results.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
    return outcome


@pytest.mark.parametrize("existing_dir", [True, False], ids=["dir-exists", "dir-created"])
def test_two_writers_started_together_exactly_one_wins(tmp_path, existing_dir):
    ctx = mp.get_context("fork")
    for i in range(ROUNDS):
        directory = tmp_path / f"round{i}"
        if existing_dir:
            directory.mkdir()
        outcome = _one_round(directory, ctx)
        kinds = sorted(kind for kind, _ in outcome)
        assert kinds == ["refused", "won"], (i, outcome)
        refusal = next(msg for kind, msg in outcome if kind == "refused")
        winner = next(pid for kind, pid in outcome if kind == "won")
        assert f"pid {winner}" in refusal, refusal
        assert not (directory / LOCK_FILE).exists()  # released, and nothing else left behind
        assert not directory.exists() or not any(directory.iterdir()), list(directory.iterdir())


def test_two_writers_on_a_stale_lock_exactly_one_takes_it_over(tmp_path):
    ctx = mp.get_context("fork")
    dead = ctx.Process(target=int)
    dead.start()
    dead.join()
    for i in range(ROUNDS // 2):
        directory = tmp_path / f"round{i}"
        directory.mkdir()
        (directory / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
        outcome = _one_round(directory, ctx)
        assert sorted(kind for kind, _ in outcome) == ["refused", "won"], (i, outcome)


@pytest.mark.parametrize("content", ["", '{"pid": ', "not json", "{}"], ids=["empty", "cut", "garbage", "no-pid"])
def test_a_lock_file_that_cannot_be_read_is_reported_not_removed(tmp_path, content):
    (tmp_path / LOCK_FILE).write_text(content)
    for attempt in (lambda: OutputLock(tmp_path).acquire(), lambda: check_output_dir(tmp_path, overwrite=True)):
        with pytest.raises(CTRError, match="cannot be read") as err:
            attempt()
        assert str(tmp_path / LOCK_FILE) in str(err.value) and "rm " in str(err.value)
    assert (tmp_path / LOCK_FILE).read_text() == content  # never removed, never rewritten
    with pytest.raises(CTRError, match="cannot be read"):
        lock_holder(tmp_path)


def test_a_lock_that_is_a_directory_is_reported(tmp_path):
    (tmp_path / LOCK_FILE).mkdir()
    with pytest.raises(CTRError, match="cannot be read"):
        OutputLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).is_dir()


def test_a_pid_reused_by_another_process_is_a_stale_lock(tmp_path, caplog):
    # this very pid, alive, but a record of another process start: the lock's owner is gone
    (tmp_path / LOCK_FILE).write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "process_start": "1"})
    )
    with caplog.at_level("WARNING"):
        lock = OutputLock(tmp_path).acquire()
    lock.release()
    assert "stale lock" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_writer_that_came_and_went_while_this_one_loaded_is_noticed(tiny_bert_dir, tmp_path):
    """Both runs passed their checks on an empty directory; the other one finished while this one
    loaded its data (it held the lock then, not now): this one must not train over it."""
    from ctr_plugin.continual.training_config import TrainingConfig
    from ctr_plugin.experiments.run import RunSettings, run

    from conftest import TINY_PLUGIN, keyword_task

    out = tmp_path / "run"
    tasks = [keyword_task("t", [["good"], ["bad"]], n_train=16, n_test=8)]

    def load_while_another_finishes():
        out.mkdir(exist_ok=True)
        (out / "results.json").write_text('{"written by": "the other run"}')
        return tasks

    settings = RunSettings(
        encoder=tiny_bert_dir, training=TrainingConfig(epochs=1, batch_size=8, progress=False), plugin=TINY_PLUGIN
    )
    with pytest.raises(CTRError, match=r"changed while this command.*results\.json"):
        run(load_while_another_finishes, settings, out)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    assert "the other run" in (out / "results.json").read_text()
