"""Checkpoint formats: today's (2) and the one before it (1), which held one tensor per task.

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

from ctr_plugin.modeling.model import CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, ContinualModel

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
    old_keys, new_keys = load_file(str(FIXTURE / name / WEIGHTS_FILE)).keys(), load_file(str(tmp_path / "again" / WEIGHTS_FILE)).keys()
    assert any(k.endswith("task_capsules.w1.2") for k in old_keys) and not any(k.endswith("task_capsules.w1.2") for k in new_keys)
    again = ContinualModel.from_pretrained(tmp_path / "again", encoder=str(FIXTURE / "encoder"))
    torch.testing.assert_close(logits_of(again), logits_of(model), rtol=0, atol=0)
    old_size = sum(v.numel() for v in load_file(str(FIXTURE / name / WEIGHTS_FILE)).values())
    assert sum(v.numel() for v in load_file(str(tmp_path / "again" / WEIGHTS_FILE)).values()) == old_size


def test_a_format_1_checkpoint_of_frozen_capsules_keeps_earlier_tasks_out_of_training():
    model = ContinualModel.from_pretrained(FIXTURE / "ctr_freeze_old_capsules", encoder=str(FIXTURE / "encoder"))
    plugin = model.plugins[0]
    assert plugin.transfer_routing.routes_frozen.shape[0] == 2 and plugin.transfer_routing.routes.shape[0] == 1
    assert plugin.task_capsules.w1_frozen.shape[1] == 2 * plugin.task_capsules.capsule_hidden
