"""The multiply-adds ctr-bench prints beside its time ratios: checked against torch's own FLOP
counter, and the bench's smoke mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from ctr_plugin.bench.arithmetic import EncoderShape, multiply_adds
from ctr_plugin.encoders.loading import load_encoder
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.plugins import PluginConfig

from conftest import TINY_PLUGIN

# the counted training steps are bare backward passes, outside HAT's rules on purpose
pytestmark = pytest.mark.filterwarnings("ignore::ctr_plugin.UnprotectedTrainingWarning")


def counted(plugin_type: str, train_encoder: bool, tasks: int, tiny_bert_dir: str, batch: int = 3, length: int = 7):
    """(multiply-adds torch's FLOP counter sees in an inference forward, in a training step; the
    model's plugin config; the model)"""
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_bert_dir)
    encoder.set_attn_implementation("eager")  # attention as matrix products, which the counter sees
    config = PluginConfig(**{**TINY_PLUGIN.to_dict(), "plugin_type": plugin_type})
    model = ContinualModel(encoder, tokenizer, config, tiny_bert_dir, head_dropout=0.0, train_encoder=train_encoder)
    for t in range(tasks):
        model.add_task(f"task{t}", ["a", "b"])
    ids = torch.randint(5, encoder.config.vocab_size, (batch, length))
    task_ids = torch.full((batch,), tasks - 1)
    model.eval()
    with FlopCounterMode(display=False) as forward:
        model(ids, torch.ones_like(ids), task_ids)
    model.train()
    with FlopCounterMode(display=False) as step:
        model(ids, torch.ones_like(ids), task_ids).logits.logsumexp(-1).sum().backward()
    return forward.get_total_flops() // 2, step.get_total_flops() // 2, config, model


@pytest.mark.parametrize(
    "plugin_type, train_encoder, tasks",
    [
        ("ctr", False, 1),
        ("ctr", False, 3),
        ("hat_adapter", False, 2),
        ("adapter", False, 2),
        ("none", False, 2),
        ("none", True, 2),
    ],
)
def test_multiply_adds_are_those_torch_counts(plugin_type, train_encoder, tasks, tiny_bert_dir):
    forward, step, config, model = counted(plugin_type, train_encoder, tasks, tiny_bert_dir)
    counts = multiply_adds(
        config, tasks, EncoderShape.of(model.encoder), batch=3, length=7, train_encoder=train_encoder
    )
    assert counts.inference == forward
    if plugin_type != "ctr":
        assert counts.training_step == step
    else:
        # The argmax backward works on the winning windows with elementwise products: it spreads
        # each window's gradient to its inputs, and forms both CNNs' weight gradients as products
        # with the gathered windows, summed over the examples: multiply-adds the counter, which
        # sees matrix products only, does not count.
        # (every kernel zero-padded to the widest: the windows the code gathers are the widest's)
        kernels = config.routing_kernel_sizes
        windows = config.routing_filters * config.capsule_size * len(kernels) * max(kernels)
        spread = 3 * (tasks + 1) * windows  # per plugin, batch 3: every learned task's CNN_prev and CNN_cur
        previous_weights, current_weights = 3 * tasks * windows, 3 * windows
        assert counts.training_step - step == len(model.plugins) * (spread + previous_weights + current_weights)


def test_bench_quick_runs_every_configuration_and_prints_the_arithmetic_beside_the_ratios(tmp_path):
    output = tmp_path / "bench.json"
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "ctr_plugin.bench.harness", "--quick", "--repeats", "3", "--output", str(output)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(output.read_text())
    kinds = {(r["kind"], r["series"]) for r in result["rows"]}
    assert {
        ("adapter", "main"),
        ("frozen_heads", "main"),
        ("full_finetune", "main"),
        ("ctr", "main"),
        ("ctr", "second"),
        ("adapter", "second"),
    } <= kinds
    assert all(
        r["train_step_s"] > 0 and r["train_multiply_adds"] > r["inference_multiply_adds_per_example"] > 0
        for r in result["rows"]
    )
    by_name = {r["name"]: r for r in result["ratios"]}
    for name in (
        "ctr_step_vs_adapter_at_3_tasks",
        "ctr_step_3_vs_1_tasks",
        "ctr_eval_vs_adapter_at_3_tasks",
        "second geometry: ctr_step_vs_adapter_at_3_tasks",
    ):
        assert (
            by_name[name]["measured"] > 0 and by_name[name]["arithmetic"] > 1.0
        )  # CTR does more arithmetic than the adapter, and more with more tasks
        assert name in run.stdout
    # every ratio is the median of its three interleaved repeats, with their spread, and the JSON keeps them
    assert [len(rows) for rows in result["repeats"]][0] == len(result["rows"])
    assert all(len(rows) < len(result["rows"]) for rows in result["repeats"][1:])  # the rows no ratio reads: once
    for item in result["ratios"]:
        assert len(item["repeats"]) == 3
        assert item["measured"] == sorted(item["repeats"])[1]
        assert item["spread"] == [min(item["repeats"]), max(item["repeats"])]
    assert "ctr_step_1_task_vs_adapter" in by_name and "spread" in run.stdout


def test_every_kind_of_bench_row_is_a_registered_method_whose_plugins_are_counted():
    from ctr_plugin.bench.arithmetic import COUNTED_PLUGINS
    from ctr_plugin.bench.measure import METHOD_OF
    from ctr_plugin.continual.methods import METHODS

    assert all(METHODS[method].plugin_type in COUNTED_PLUGINS for method in METHOD_OF.values())
    with pytest.raises(ValueError, match="not counted"):
        multiply_adds(PluginConfig(plugin_type="lora"), 1, EncoderShape(8, 1, 16), batch=1, length=1)
