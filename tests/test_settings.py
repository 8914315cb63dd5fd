"""One settings path (ctr_plugin/experiments/settings.py): the config, the tuned file, the flags and the method
options meet in one stated order; every option has a flag; two sources that disagree on a
setting that is not meant to be overridden are an error naming both."""

from __future__ import annotations

import dataclasses

import pytest

from ctr_plugin.commands import train
from ctr_plugin.continual.methods import get_method
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.option_flags import NOT_OPTIONS, option_flags_given
from ctr_plugin.experiments.settings import build_settings
from ctr_plugin.experiments.tuning import write_tuned
from ctr_plugin.plugins import PluginConfig

CONFIG = {"lr": "1e-2", "epochs": 2, "adapter_size": 32, "seed": 5}


def test_the_order_is_defaults_then_config_then_tuned_then_flags(tmp_path):
    tuned = tmp_path / "seq.tuned.yaml"
    write_tuned(tuned, {"replay": {"training": {"lr": 0.003, "epochs": 4}, "method_options": {"memory_size": 50}}}, {})
    settings = build_settings(
        "replay",
        config_training=CONFIG,
        flags={"epochs": 4, "max_length": 20},
        method_args={"replay_batch_size": "3"},
        tuned=str(tuned),
    )
    assert settings.training.lr == 0.003 and settings.training.epochs == 4  # tuned over the config; the flag agrees
    assert settings.training.max_length == 20 and settings.training.seed == 5 and settings.plugin.adapter_size == 32
    assert settings.training.batch_size == TrainingConfig().batch_size  # untouched: the default
    assert (settings.method.memory_size, settings.method.replay_batch_size) == (
        50,
        3,
    )  # the method, built once, with its options


def test_a_flag_overrides_the_config_but_not_a_tuned_value(tmp_path):
    assert (
        build_settings("ctr", config_training=CONFIG, flags={"seed": 1}).training.seed == 1
    )  # meant: flags override the config
    tuned = tmp_path / "seq.tuned.yaml"
    write_tuned(tuned, {"ctr": {"training": {"lr": 0.003}, "method_options": {"mask_lambda": 0.5}}}, {})
    with pytest.raises(
        CTRError, match=r"command line sets lr=0.1.*contradicts the tuned value lr=0.003 \(the tuned options in"
    ):
        build_settings("ctr", config_training=CONFIG, flags={"lr": 0.1}, tuned=str(tuned))
    with pytest.raises(
        CTRError, match=r"--method-arg sets mask_lambda=1.*contradicts the tuned value mask_lambda=0.5"
    ):
        build_settings("ctr", method_args={"mask_lambda": "1"}, tuned=str(tuned))


@pytest.mark.parametrize(
    "method, source, setting, phrase",
    [
        ("adapter_one", "config", {"train_layernorm": True}, "runs with the plugin option train_layernorm=False"),
        ("adapter_one", "flags", {"train_layernorm": True}, "The command line sets train_layernorm=True"),
        ("ctr_linear_up", "flags", {"tsm_activation": "relu"}, "tsm_activation=none"),
    ],
)
def test_a_plugin_option_the_method_fixes_cannot_be_set_otherwise(method, source, setting, phrase):
    where = {"config_training": setting} if source == "config" else {"flags": setting}
    with pytest.raises(CTRError, match=phrase) as err:
        build_settings(method, config_name="the config my.yaml", **where)
    assert method in str(err.value) and ("my.yaml" in str(err.value) if source == "config" else True)


def test_a_plugin_option_the_method_fixes_is_recorded_with_its_value():
    assert build_settings("adapter_one").plugin.train_layernorm is False
    assert build_settings("ctr_linear_up").plugin.tsm_activation == "none"
    assert (
        build_settings("adapter_one", config_training={"train_layernorm": False}).plugin.train_layernorm is False
    )  # agreeing is fine


def test_lora_rank_and_scaling_are_plugin_options_only(tmp_path):
    assert build_settings("lora_ncl", config_training={"lora_rank": 4}).plugin.lora_rank == 4
    assert build_settings("lora_one", flags={"lora_rank": 2, "lora_alpha": 8.0}).plugin.lora_alpha == 8.0
    with pytest.raises(CTRError, match="has no option 'rank'"):
        build_settings("lora_ncl", method_args={"rank": "16"})
    tuned = build_settings("lora_ncl", tuned="hl5_products")  # the committed tuned file: rank 4
    assert tuned.plugin.lora_rank == 4 and tuned.method.options() == {}


def test_the_python_api_applies_the_plugin_options_a_method_fixes():
    assert get_method("adapter_one").plugin_config(PluginConfig()).train_layernorm is False
    assert get_method("ctr_linear_up").plugin_config(PluginConfig()).tsm_activation == "none"
    assert get_method("lora_ncl").plugin_config(PluginConfig(lora_rank=4)).lora_rank == 4


def test_each_flag_takes_its_help_and_range_from_the_field(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    lr = next(f for f in dataclasses.fields(TrainingConfig) if f.name == "lr")
    assert " ".join(lr.metadata["help"].split()) in text and "Default 0.001; a finite number > 0 and <= 10" in text
    assert "--lora-rank" in text and "--progress" not in text.replace("--no-progress", "")


def test_the_order_and_the_caps_are_applied_in_one_place(tmp_path):
    from ctr_plugin.data import load_sequence_config, resolve_config
    from ctr_plugin.experiments.settings import select_tasks

    sequence = load_sequence_config(resolve_config("hl5_products"))
    chosen = select_tasks(sequence, 1, max_train=10)
    assert (
        sorted(t.name for t in chosen.tasks) == sorted(t.name for t in sequence.tasks)
        and chosen.tasks != sequence.tasks
    )
    assert all(
        t.max_train == 10 and t.max_test == s.max_test
        for t, s in zip(select_tasks(sequence, max_train=10).tasks, sequence.tasks)
    )
    assert all(t.max_test is None for t in select_tasks(sequence, test_cap_from_config=False).tasks)
    with pytest.raises(CTRError, match="--max-test-per-task must be at least 2"):
        select_tasks(sequence, max_test=1)
    with pytest.raises(CTRError, match="--order 99 is out of range"):
        select_tasks(sequence, 99)


def test_every_training_and_plugin_option_has_a_flag():
    argv = [
        "--warmup-ratio",
        "0.2",
        "--no-train-layernorm",
        "--freeze-old-capsules",
        "--routing-kernel-sizes",
        "2",
        "3",
        "--mask-init-mean",
        "1.5",
    ]
    args = train.parse_args(argv)
    assert option_flags_given(args) == {
        "warmup_ratio": 0.2,
        "train_layernorm": False,
        "freeze_old_capsules": True,
        "routing_kernel_sizes": (2, 3),
        "mask_init_mean": 1.5,
    }
    for f in dataclasses.fields(TrainingConfig) + dataclasses.fields(PluginConfig):
        if f.name not in NOT_OPTIONS:
            assert hasattr(args, f.name), f"no --{f.name.replace('_', '-')}"
    settings = build_settings("ctr", flags=option_flags_given(args))
    assert (
        settings.plugin.routing_kernel_sizes == (2, 3)
        and settings.plugin.freeze_old_capsules
        and not settings.plugin.train_layernorm
    )
    assert settings.training.warmup_ratio == 0.2 and settings.plugin.mask_init_mean == 1.5


def test_an_unknown_option_in_the_config_names_the_config():
    with pytest.raises(CTRError, match=r"Unknown training option\(s\) \['learning_rate'\] in the config x.yaml"):
        build_settings("ctr", config_training={"learning_rate": 0.1}, config_name="the config x.yaml")
