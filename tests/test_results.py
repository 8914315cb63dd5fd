"""The results.json schema (ctr_plugin/reporting/results.py): what a run writes validates, a damaged or
inconsistent file is named with its problem, and only finished runs count as finished; the tables
take a method's group and ONE reference from its class, never from its name."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

import ctr_plugin.reporting.results as results_file
from ctr_plugin.continual.progress import ContinualResults
from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.metrics import empty_matrix


def _progress(completed: int = 2) -> dict:
    loop = ContinualResults(["a", "b"], empty_matrix(2), empty_matrix(2), completed_tasks=completed)
    values = [[80.0, None], [70.0, 90.0]]
    for i in range(completed):
        loop.acc_matrix[i], loop.f1_matrix[i] = list(values[i]), list(values[i])
    return loop.to_dict()


def test_what_a_run_writes_validates_and_reads_back(tmp_path):
    data = results_file.assemble(_progress(), {"method": "ctr", "seed": 0}, wall_seconds=1.23)
    assert data["final_acc"] == 80.0 and data["wall_seconds"] == 1.2
    results_file.write(tmp_path, data)
    assert results_file.read(tmp_path) == data == results_file.finished(tmp_path)


def test_a_run_part_way_through_is_valid_but_not_finished(tmp_path):
    results_file.write(tmp_path, results_file.assemble(_progress(completed=1), {"method": "ctr"}))
    assert results_file.read(tmp_path)["completed_tasks"] == 1
    assert results_file.finished(tmp_path) is None and results_file.read_complete(tmp_path / "results.json") is None


def test_an_undeclared_key_is_refused_when_the_file_is_assembled():
    with pytest.raises(ValueError, match="no key.*learning_rate_typo"):
        results_file.assemble(_progress(), {"learning_rate_typo": 1})


@pytest.mark.parametrize(
    "damage, phrase",
    [
        (lambda d: d.pop("acc_matrix"), "missing key"),
        (lambda d: d["acc_matrix"][0].__setitem__(1, 50.0), "must be null"),
        (lambda d: d["f1_matrix"][1].__setitem__(0, None), "must be a percentage"),
        (lambda d: d["acc_matrix"].pop(), "2 rows of 2 values"),
        (lambda d: d.__setitem__("final_acc", 99.0), "final_acc disagree"),
        (lambda d: d.__setitem__("completed_tasks", 3), "from 0 to 2"),
    ],
)
def test_an_inconsistent_file_is_named_with_its_problem(damage, phrase, tmp_path):
    data = results_file.assemble(_progress(), {"method": "ctr"}, wall_seconds=1.0)
    damage(data)
    (tmp_path / "results.json").write_text(json.dumps(data))
    with pytest.raises(CTRError, match=phrase) as err:
        results_file.read(tmp_path)
    assert "results.json" in str(err.value)
    assert results_file.read_complete(tmp_path / "results.json") is None  # a grid runs it again


def test_a_cut_off_file_is_not_json_and_says_so(tmp_path):
    (tmp_path / "results.json").write_text('{"tasks": ["a"')
    with pytest.raises(CTRError, match="not valid JSON"):
        results_file.read(tmp_path)


def test_a_new_method_gets_its_declared_group_and_reference_in_the_tables(monkeypatch):
    from ctr_plugin.continual import methods
    from ctr_plugin.continual.methods.adapter_ncl import AdapterNCL
    from ctr_plugin.experiments.grid_summary import _method_order, group_of, one_reference

    @dataclass
    class Newcomer(AdapterNCL):
        name = "newcomer"
        table_group = "new ideas"
        one_reference = "bert_one"

    monkeypatch.setitem(methods.METHODS, "newcomer", Newcomer)
    assert group_of("newcomer") == "new ideas" and one_reference("newcomer") == "bert_one"
    # declared groups in their order, then any other declared group, then unknown methods
    assert _method_order(["mystery", "newcomer", "ctr", "bert_one"]) == ["bert_one", "ctr", "newcomer", "mystery"]
