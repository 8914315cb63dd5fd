"""Checkpoint formats: today's (2) and the one before it (1), which held one tensor per task; and
checkpoints of one-model-per-task methods written before those kept every task's weights.

tests/fixtures/checkpoint_v1 holds two format-1 checkpoints made by ctr_plugin as of commit d68fa21
(tests/fixtures/make_checkpoint_v1.py), on a tiny encoder saved beside them, and the logits that
code gave on a mixed-task batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ctr_plugin.checkpoint.format import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.errors import TaskError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import PluginConfig

FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint_v1"
EXPECTED = json.loads((FIXTURE / "expected_logits.json").read_text())


def logits_of(model: ContinualModel) -> torch.Tensor:
    with torch.no_grad():
        return model(**model.tokenize(EXPECTED["texts"]), task_ids=torch.tensor(EXPECTED["task_ids"])).logits


@pytest.mark.parametrize("name", ["ctr", "ctr_freeze_old_capsules"])
def test_a_format_1_checkpoint_loads_and_predicts_as_the_code_that_wrote_it(name, tmp_path):
    assert json.loads((FIXTURE / name / CONFIG_FILE).read_text())["format_version"] == 1
    model = ContinualModel.from_pretrained(FIXTURE / name, encoder=str(FIXTURE / "encoder"))
    assert model.plugin_config.freeze_old_capsules == (name == "ctr_freeze_old_capsules")
    torch.testing.assert_close(logits_of(model), torch.tensor(EXPECTED["logits"][name]), rtol=1e-5, atol=1e-5)

    model.save_pretrained(tmp_path / "again")  # written again in today's format, the same model
    assert json.loads((tmp_path / "again" / CONFIG_FILE).read_text())["format_version"] == FORMAT_VERSION == 2
    old_keys, new_keys = (
        load_file(str(FIXTURE / name / WEIGHTS_FILE)).keys(),
        load_file(str(tmp_path / "again" / WEIGHTS_FILE)).keys(),
    )
    assert any(k.endswith("task_capsules.w1.2") for k in old_keys) and not any(
        k.endswith("task_capsules.w1.2") for k in new_keys
    )
    again = ContinualModel.from_pretrained(tmp_path / "again", encoder=str(FIXTURE / "encoder"))
    torch.testing.assert_close(logits_of(again), logits_of(model), rtol=0, atol=0)
    old_size = sum(v.numel() for v in load_file(str(FIXTURE / name / WEIGHTS_FILE)).values())
    assert sum(v.numel() for v in load_file(str(tmp_path / "again" / WEIGHTS_FILE)).values()) == old_size


def test_a_format_1_checkpoint_of_frozen_capsules_keeps_earlier_tasks_out_of_training():
    model = ContinualModel.from_pretrained(FIXTURE / "ctr_freeze_old_capsules", encoder=str(FIXTURE / "encoder"))
    plugin = model.plugins[0]
    assert plugin.transfer_routing.routes_frozen.shape[0] == 2 and plugin.transfer_routing.routes.shape[0] == 1
    assert plugin.task_capsules.w1_frozen.shape[1] == 2 * plugin.task_capsules.capsule_hidden


@pytest.mark.parametrize(
    "method, plugin_type, serves_every_task",
    [("lora_one", "lora", False), ("bert_one", "none", False), ("lora_one", "lora_per_task", True)],
)
def test_an_old_one_model_per_task_checkpoint_serves_the_only_task_whose_weights_it_holds(
    method, plugin_type, serves_every_task, tmp_path
):
    """Before the one-model-per-task methods kept every task's weights (their own LoRA adapter, or
    their own copy of the encoder), their checkpoints held the last task's only: loaded, such a
    checkpoint refuses the earlier tasks rather than answer them with the last task's weights."""
    encoder, tokenizer = load_encoder(str(FIXTURE / "encoder"))
    model = ContinualModel(
        encoder, tokenizer, PluginConfig(plugin_type=plugin_type, pooling="mean"), str(FIXTURE / "encoder")
    )
    model.add_task("sentiment", ["negative", "positive"])
    model.add_task("colour", ["red", "blue"])
    model.method_name = method
    model.save_pretrained(tmp_path / "old")
    loaded = ContinualModel.from_pretrained(tmp_path / "old")
    assert loaded.predict(["a red one"], task="colour")[0].task == "colour"
    if serves_every_task:
        assert loaded.predict(["a good one"], task="sentiment")[0].task == "sentiment"
        return
    with pytest.raises(TaskError, match="holds only its last task's weights: it can classify task 'colour' only"):
        loaded.predict(["a good one"], task="sentiment")
    with pytest.raises(TaskError, match="holds only its last task's weights"):
        loaded.predict(["a good one", "a red one"], task=["sentiment", "colour"])
