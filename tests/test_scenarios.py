"""Task-, domain- and class-incremental scenarios: one head shared by every task's classes or the
task inferred from per-task modules (Kim et al. 2022), tests that never see a task id, prediction
without a task, and the refusals."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from ctr_plugin.continual.evaluation import score_task
from ctr_plugin.continual.learner import ContinualLearner, get_continual_model
from ctr_plugin.continual.methods import ContinualMethod, method_class
from ctr_plugin.continual.scenarios import check_method_scenario
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.scenarios import check_label_sets
from ctr_plugin.errors import CTRError, DataError, TaskError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.modeling.task_inference import all_task_logits, combine, task_probabilities
from ctr_plugin.reporting import results as results_file

from conftest import TINY_PLUGIN, keyword_task

FAST = dict(epochs=1, batch_size=8, lr=1e-2, progress=False)


def task(name: str, labels: list[str], keywords: list[list[str]]):
    data = keyword_task(name, keywords, n_train=24, n_test=12)
    return dataclasses.replace(data, label_names=labels)


@pytest.fixture
def domain_tasks():
    """Two tasks with one label set (the order of the names differs: labels are matched by name)."""
    return [
        task("apex", ["positive", "negative"], [["good", "great"], ["bad", "awful"]]),
        task("nokia", ["negative", "positive"], [["poor", "sad"], ["nice", "fine"]]),
    ]


@pytest.fixture
def class_tasks():
    """Three tasks, each bringing new classes."""
    return [
        task("sentiment", ["good", "bad"], [["good", "great"], ["bad", "awful"]]),
        task("colour", ["red", "blue", "green"], [["red", "pink"], ["blue"], ["green"]]),
        task("animal", ["cat", "dog"], [["cat", "cow"], ["dog", "hen"]]),
    ]


def model_for(method: str, tiny_bert_dir: str) -> ContinualModel:
    config = dataclasses.replace(TINY_PLUGIN, plugin_type=method_class(method).plugin_type)
    return get_continual_model(tiny_bert_dir, config, method=method)


def learn(method: str, scenario: str, tasks, tiny_bert_dir) -> ContinualLearner:
    torch.manual_seed(0)
    learner = ContinualLearner(model_for(method, tiny_bert_dir), method, scenario=scenario, **FAST)
    for data in tasks:
        learner.learn_task(data.name, data)
    return learner


# ---- each scenario end to end -------------------------------------------------------------------


def test_domain_il_shared_head_methods_learn_one_head_over_the_shared_labels(domain_tasks, tiny_bert_dir):
    learner = learn("lwf", "domain", domain_tasks, tiny_bert_dir)
    model, results = learner.model, learner.results.to_dict()
    assert len(model.heads) == 1 and model.heads[0].out_features == 2
    assert model.scenario.class_names == ["positive", "negative"]
    assert model.scenario.class_ids == [[0, 1], [1, 0]]
    assert results["scenario"] == "domain"
    assert len(results["seen_acc"]) == 2 and all(0 <= v <= 100 for v in results["seen_acc"])
    assert results["task_id_acc"] == [] and results["task_scores"] == {}  # a shared head infers no task
    assert not results_file.validate(results)


def test_class_il_shared_head_grows_a_row_per_new_class_and_keeps_the_old_rows(class_tasks, tiny_bert_dir):
    model = model_for("replay", tiny_bert_dir)
    ContinualLearner(model, "replay", scenario="class", **FAST)
    model.add_task("sentiment", ["good", "bad"])
    old = model.heads[0].weight.detach().clone()
    model.add_task("colour", ["red", "blue", "good"])  # "good" is the same class as before: merged by name
    assert model.heads[0].out_features == 4
    assert torch.equal(model.heads[0].weight[:2], old)
    assert model.scenario.class_ids == [[0, 1], [2, 3, 0]]


def test_class_il_replay_runs_end_to_end_and_reports_accuracy_over_all_seen_classes(class_tasks, tiny_bert_dir):
    learner = learn("replay", "class", class_tasks, tiny_bert_dir)
    results = learner.results.to_dict()
    assert learner.model.heads[0].out_features == 7
    assert results["scenario"] == "class" and len(results["seen_acc"]) == 3
    n = [len(t.test) for t in class_tasks]
    last = [results["acc_matrix"][2][j] for j in range(3)]  # example-weighted mean of the last row
    assert results["seen_acc"][2] == pytest.approx(sum(a * k for a, k in zip(last, n)) / sum(n), abs=0.02)


@pytest.mark.parametrize("method", ["ctr", "adapter_one"])
def test_class_il_per_task_modules_infer_the_task_and_report_task_id_accuracy(method, class_tasks, tiny_bert_dir):
    learner = learn(method, "class", class_tasks[:2], tiny_bert_dir)
    model, results = learner.model, learner.results.to_dict()
    assert len(model.heads) == 2 and not model.scenario.shared_head
    assert set(results["task_scores"]) == {"msp", "energy"}
    assert results["task_id_acc"] == results["task_scores"]["msp"]["task_id_acc"]
    assert results["task_id_acc"][0] == 100.0  # one task learned: it is always the one inferred
    assert results["seen_acc"] == results["task_scores"]["msp"]["seen_acc"]
    assert not results_file.validate(results)


def test_domain_il_per_task_weights_infer_the_task_one_pass_per_task(domain_tasks, tiny_bert_dir):
    learner = learn("bert_one", "domain", domain_tasks, tiny_bert_dir)
    assert len(learner.results.to_dict()["task_id_acc"]) == 2


# ---- task-id inference -------------------------------------------------------------------------


def test_msp_and_energy_task_probabilities_follow_their_definitions():
    logits = torch.tensor([[[2.0, 0.0, float("-inf")], [1.0, 1.0, 1.0]]])  # one example, two tasks
    msp = torch.tensor([torch.tensor([2.0, 0.0]).softmax(0).max(), 1 / 3])
    assert torch.allclose(task_probabilities(logits, "msp")[0], msp / msp.sum())
    energy = torch.stack([torch.tensor([2.0, 0.0]).logsumexp(0), torch.tensor([1.0, 1.0, 1.0]).logsumexp(0)])
    assert torch.allclose(task_probabilities(logits, "energy")[0], energy.softmax(0))


def test_class_probability_is_within_task_times_task_probability_summed_over_tasks_naming_the_class(
    tiny_bert_dir,
):
    model = model_for("adapter_one", tiny_bert_dir)
    ContinualLearner(model, "adapter_one", scenario="class", **FAST)
    model.add_task("a", ["x", "y"])
    model.add_task("b", ["z", "x"])  # "x" in both tasks: one class
    logits = torch.tensor([[[1.0, 0.0], [0.5, 2.0]]])
    out = combine(model, logits, "energy")
    joint = torch.cat([logits[0, 0], logits[0, 1]]).softmax(0)  # energy: the softmax of all logits side by side
    assert torch.allclose(out.class_probs[0], torch.stack([joint[0] + joint[3], joint[1], joint[2]]))


def test_all_tasks_logits_come_from_one_batched_pass_equal_to_each_task_given(class_tasks, tiny_bert_dir):
    learner = learn("ctr", "class", class_tasks, tiny_bert_dir)
    model = learner.model.eval()
    batch = model.tokenize(class_tasks[0].test.texts[:5], max_length=32)
    calls = []
    hook = model.head_dropout.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    with torch.no_grad(), model.scenario.withholding():
        logits, outliers = all_task_logits(model, batch)
    hook.remove()
    assert outliers is None  # no outlier class without OOD replay
    assert calls == [5 * 3]  # one forward pass: every example once per task
    with torch.no_grad():
        for t in range(3):
            own = model(**batch, task_ids=torch.full((5,), t)).logits
            assert torch.allclose(logits[:, t, : own.shape[-1]], own, atol=1e-5)


# ---- no task id at test time -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "scenario"), [("adapter_ncl", "domain"), ("ctr", "class")])
def test_domain_and_class_il_tests_never_give_the_model_a_test_examples_task(
    method, scenario, domain_tasks, class_tasks, tiny_bert_dir
):
    tasks = domain_tasks if scenario == "domain" else class_tasks[:2]
    learner = learn(method, scenario, tasks, tiny_bert_dir)
    model, seen = learner.model, []
    forward = model.forward

    def spy(*args, task_ids=None, **kwargs):
        seen.append(None if task_ids is None else task_ids.tolist())
        return forward(*args, task_ids=task_ids, **kwargs)

    model.forward = spy
    matrices = ([[None] * 2 for _ in range(2)], [[None] * 2 for _ in range(2)])
    score_task(model, learner.method, tasks[1], "test", TrainingConfig(progress=False), matrices, 1, [1])
    assert seen
    for task_ids in seen:  # none, or every learned task for every example: never the test example's own
        assert task_ids is None or task_ids == [0, 1] * (len(task_ids) // 2)


def test_the_model_refuses_task_ids_while_they_are_withheld(domain_tasks, tiny_bert_dir):
    learner = learn("adapter_ncl", "domain", domain_tasks[:1], tiny_bert_dir)
    batch = learner.model.tokenize(["good cat"])
    with learner.model.scenario.withholding(), pytest.raises(TaskError, match="withheld"):
        learner.model(**batch, task_ids=torch.tensor([0]))


def test_a_plugin_that_needs_the_task_id_raises_when_the_forward_has_none(class_tasks, tiny_bert_dir):
    learner = learn("ctr", "class", class_tasks[:1], tiny_bert_dir)
    batch = learner.model.tokenize(["good cat"])
    with learner.model.scenario.withholding(), pytest.raises(TaskError, match="task id"):
        learner.model(**batch)


# ---- prediction without a task id --------------------------------------------------------------


def test_predict_without_a_task_returns_the_inferred_task_and_its_probability(class_tasks, tiny_bert_dir):
    model = learn("adapter_one", "class", class_tasks[:2], tiny_bert_dir).model
    predictions = model.predict(["red cow", "good dog"])
    for p in predictions:
        assert p.task in ("sentiment", "colour") and 0 < p.task_score <= 1
        assert p.label in model.label_names[model.task_id(p.task)] or p.label in model.scenario.class_names
        assert len(p.logits) == len(model.label_names[model.task_id(p.task)])
    energy = model.predict(["red cow"], score="energy")[0]
    assert energy.task in ("sentiment", "colour")


def test_predict_without_a_task_on_a_shared_head_answers_among_every_class(class_tasks, tiny_bert_dir):
    model = learn("adapter_ncl", "class", class_tasks[:2], tiny_bert_dir).model
    p = model.predict(["red cow"])[0]
    assert p.label in ["good", "bad", "red", "blue", "green"] and p.task is None and len(p.logits) == 5
    given = model.predict(["red cow"], task="colour")[0]  # with the task: among its own classes
    assert given.label in ["red", "blue", "green"] and len(given.logits) == 3


def test_a_task_il_model_asked_without_a_task_names_the_scores_it_can_use(class_tasks, tiny_bert_dir):
    model = learn("adapter_one", "task", class_tasks[:2], tiny_bert_dir).model
    with pytest.raises(TaskError, match="'msp' or 'energy'"):
        model.predict(["red cow"])
    assert model.predict(["red cow"], score="energy")[0].task in ("sentiment", "colour")


def test_a_class_il_checkpoint_predicts_as_before_and_an_old_one_loads_as_task_il(
    class_tasks, tiny_bert_dir, tmp_path
):
    for method in ("adapter_ncl", "ctr"):
        learner = learn(method, "class", class_tasks[:2], tiny_bert_dir)
        learner.save_pretrained(tmp_path / method)
        config = json.loads((tmp_path / method / "ctr_config.json").read_text())
        assert config["scenario"] == {"name": "class", "shared_head": method == "adapter_ncl"}
        assert "class-incremental" in (tmp_path / method / "README.md").read_text()
        loaded = ContinualModel.from_pretrained(tmp_path / method, encoder=tiny_bert_dir)
        texts = ["red cow", "good dog", "blue hen"]
        assert loaded.predict(texts) == learner.model.eval().predict(texts)
    old = tmp_path / "old"
    learn("adapter_one", "task", class_tasks[:1], tiny_bert_dir).save_pretrained(old)
    config = json.loads((old / "ctr_config.json").read_text())
    del config["scenario"], config["config_sha256"]["scenario"]  # as written before the scenarios
    (old / "ctr_config.json").write_text(json.dumps(config))
    assert ContinualModel.from_pretrained(old, encoder=tiny_bert_dir).scenario.name == "task"


def test_ctr_predict_without_task_prints_the_inferred_task(class_tasks, tiny_bert_dir, tmp_path, capsys):
    from ctr_plugin.commands import predict

    learn("adapter_one", "class", class_tasks[:2], tiny_bert_dir).save_pretrained(tmp_path / "ckpt")
    assert predict.main(["--checkpoint", str(tmp_path / "ckpt"), "--encoder", tiny_bert_dir, "red cow"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["task"] in ("sentiment", "colour") and 0 < line["task_score"] <= 1 and "label" in line


# ---- the run: config, flag, results.json -------------------------------------------------------


def test_ctr_train_with_scenario_records_it_in_results_checkpoint_and_card(tiny_bert_dir, tmp_path, capsys):
    from ctr_plugin.commands import predict, train

    from test_cli import write_csv

    files = []
    for data in (
        task("apex", ["positive", "negative"], [["good", "great"], ["bad", "awful"]]),
        task("nokia", ["positive", "negative"], [["nice", "fine"], ["poor", "sad"]]),
    ):
        rows = [(t, data.label_names[y]) for s in (data.train, data.test) for t, y in zip(s.texts, s.labels)]
        files.append(write_csv(tmp_path / f"{data.name}.csv", rows))
    out = tmp_path / "run"
    argv = ["--datasets", *files, "--encoder", tiny_bert_dir, "--output-dir", str(out), "--scenario", "domain"]
    assert train.main([*argv, "--method", "ctr", "--adapter-size", "16", "--epochs", "1", "--no-progress"]) == 0
    results = results_file.read(out)
    assert results["scenario"] == "domain" and results["data"]["scenario"] == "domain"
    assert len(results["task_id_acc"]) == 2
    assert json.loads((out / "checkpoint" / "ctr_config.json").read_text())["scenario"]["name"] == "domain"
    assert "domain-incremental" in (out / "checkpoint" / "README.md").read_text()
    capsys.readouterr()
    assert predict.main(["--checkpoint", str(out / "checkpoint"), "--encoder", tiny_bert_dir, "bad cat"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("positive", "negative")


def test_old_results_upgrade_to_task_il_and_a_bad_scenario_is_invalid():
    old = {"tasks": ["a"], "acc_matrix": [[50.0]], "f1_matrix": [[50.0]], "completed_tasks": 1}
    upgraded = results_file.upgrade(old)
    assert upgraded["scenario"] == "task" and upgraded["seen_acc"] == [] and upgraded["task_scores"] == {}
    assert results_file.validate(old | {"scenario": "class", "seen_acc": [50.0]}) == []
    assert results_file.validate(old | {"scenario": "open-world"})
    assert results_file.validate(old | {"seen_acc": [50.0, 60.0]})  # more rows than tasks completed


def test_the_shipped_hl5_products_domain_sequence_is_hl5_products_without_task_ids():
    from ctr_plugin.data.config import load_sequence_config

    domain, base = load_sequence_config("hl5_products_domain"), load_sequence_config("hl5_products")
    assert domain.scenario == "domain" and base.scenario == "task"
    assert domain.tasks == base.tasks and domain.training == base.training
    assert domain.orders_file == base.orders_file


# ---- refusals ------------------------------------------------------------------------------------


def test_domain_il_refuses_tasks_with_different_label_sets(class_tasks, domain_tasks, tiny_bert_dir):
    with pytest.raises(TaskError, match="Domain-IL needs one label set"):
        check_label_sets("domain", [(t.name, t.label_names) for t in class_tasks])
    learner = learn("adapter_ncl", "domain", domain_tasks[:1], tiny_bert_dir)
    with pytest.raises(TaskError, match="Domain-IL needs one label set"):
        learner.learn_task("colour", class_tasks[1])
    assert learner.model.num_tasks == 1  # refused before anything changed


def test_class_il_refuses_a_task_that_brings_no_new_class(domain_tasks):
    with pytest.raises(TaskError, match="Class-IL needs each task to bring new classes"):
        check_label_sets("class", [(t.name, t.label_names) for t in domain_tasks])


def test_a_method_that_does_not_serve_a_scenario_is_refused_with_the_reason():
    @dataclasses.dataclass
    class TaskOnly(ContinualMethod):
        name = "task_only"
        plugin_type = "adapter"
        scenarios = ("task",)
        scenario_refusal = "it needs the task id to pick its memory"

    with pytest.raises(CTRError, match="cannot serve the class-incremental scenario: it needs the task id"):
        check_method_scenario(TaskOnly(), "class")


def test_a_model_keeps_its_scenario_and_a_config_names_only_known_ones(class_tasks, tiny_bert_dir, tmp_path):
    learner = learn("adapter_ncl", "class", class_tasks[:1], tiny_bert_dir)
    with pytest.raises(TaskError, match="cannot go on in the domain scenario"):
        ContinualLearner(learner.model, "adapter_ncl", scenario="domain", **FAST)
    config = tmp_path / "seq.yaml"
    config.write_text("scenario: open-world\ntasks:\n  - {name: a, dataset: hl_apex_dvd}\n")
    from ctr_plugin.data.config import load_sequence_config

    with pytest.raises(DataError, match="task, domain, class"):
        load_sequence_config(config)


def test_the_shipped_class_il_sequence_has_eleven_classes_in_four_tasks_two_per_kind_of_text():
    from ctr_plugin.data.config import load_sequence_config

    sequence = load_sequence_config("offline_classes")
    labels = [(spec.name, [str(x) for x in spec.labels]) for spec in sequence.tasks]
    assert sequence.scenario == "class" and len(labels) >= 4
    assert len({x for _, names in labels for x in names}) >= 10
    check_label_sets("class", labels)
    assert sorted(spec.dataset for spec in sequence.tasks) == ["bbc_news", "bbc_news", "trec_coarse", "trec_coarse"]
