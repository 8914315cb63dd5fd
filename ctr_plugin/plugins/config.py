"""The configuration that says which plugin sits in each sublayer, and its sizes: a dataclass with
one checked option per field, saved as JSON beside a checkpoint's weights (its ``plugin_type`` is the
type tag). It imports no torch, so that a command builds its flags from it, and a config is read and
checked, without loading a model library."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ctr_plugin.errors import CheckpointError, CTRError
from ctr_plugin.options import Range, check_plugin_config, option
from ctr_plugin.plugins.registry import check_plugin_type

POOLINGS = ("pooler", "cls", "mean")
TSM_ACTIVATIONS = ("relu", "none")
CHECKPOINT_CONFIG = "ctr_config.json"  # a checkpoint's config: checkpoint/format.py's CONFIG_FILE


@dataclass
class PluginConfig:
    """Which plugin sits in each sublayer, and its sizes. Saved as JSON beside the weights."""

    plugin_type: str = option(
        "ctr",
        'a registered plugin kind (plugins/registry.py): "ctr" (KSM + TSM), "hat_adapter" (TSM alone), '
        '"adapter" (Houlsby), "adapter_per_task" (one Houlsby adapter per task, chosen by the task id), '
        '"lora" (peft LoRA on the attention projections), "lora_per_task" (one such LoRA per task), "none"; '
        "the method decides it",
        flag=False,
    )
    adapter_size: int = option(
        2000, "a: width of the TSM / adapter bottleneck (paper: 2000 at d = 768)", Range("int", 1, 1_000_000)
    )
    capsule_size: int = option(3, "c: size of a task capsule and of each transfer capsule", Range("int", 1, 100_000))
    num_transfer_capsules: int = option(3, "N: transfer capsules", Range("int", 1, 100_000))
    task_capsule_hidden: int = option(8, "hidden width of each task's 2-layer capsule net", Range("int", 1, 100_000))
    routing_filters: int = option(100, "filters per kernel size in the routing CNNs", Range("int", 1, 100_000))
    routing_kernel_sizes: tuple[int, ...] = option(
        (3, 4, 5), "kernel sizes of the routing CNNs", Range("int", 1, 10_000)
    )
    s_max: float = option(
        400.0, "HAT: the largest temperature, used at evaluation", Range("float", 0, None, low_open=True)
    )
    train_layernorm: bool = option(True, "train the LayerNorm after each plugin (the paper's code does)")
    freeze_old_capsules: bool = option(False, "protect earlier tasks' capsules and routes (not in the paper)")
    tsm_activation: str = option(
        "relu",
        "the activation on the TSM's up-projection W2: \"relu\" as in the paper's code (the module can then only add "
        'non-negative vectors to the residual stream) or "none" as in Houlsby adapters',
        choices=TSM_ACTIVATIONS,
    )
    # HAT clamps the mask embeddings to [-6, 6].
    mask_init_mean: float = option(
        0.0, "HAT mask embeddings e_t ~ N(mean, std^2) (HAT: N(0, 1)): the mean", Range("float", -6, 6)
    )
    # HAT's N(0, 1), not the CTR reference code's N(0, 0.02) (transformers' init of an nn.Embedding):
    # with 0.02 the masks learn, but on validation data the first task lost 2.8-3.4 points at three
    # epochs and CTR did not gain over three tasks (docs/ctr_diagnosis.md, point 5).
    mask_init_std: float = option(
        1.0,
        "HAT mask embeddings e_t ~ N(mean, std^2): the standard deviation (HAT: 1; the CTR reference code: 0.02)",
        Range("float", 0, 10),
    )
    pooling: str = option(
        "pooler",
        "what the task heads read: \"pooler\" (BERT's frozen pooler, the paper's choice; the first token where "
        'the encoder has none), "cls" (the first token), or "mean" (mean over real tokens: what '
        "sentence-transformers encoders such as the bundled MiniLM were trained for)",
        choices=POOLINGS,
    )
    lora_rank: int = option(
        8,
        'r: rank of the LoRA update of each query / value projection (plugin types "lora", "lora_per_task")',
        Range("int", 1, 100_000),
    )
    lora_alpha: float = option(
        16.0, "LoRA scaling: the update is (alpha / r) B A", Range("float", 0, None, low_open=True)
    )
    lora_target_modules: tuple[str, ...] = option(
        (),
        "the modules LoRA goes on, by name or name suffix (peft's `target_modules`); empty: peft's own targets for "
        "the encoder's architecture (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)",
        flag=False,
    )

    def __post_init__(self):
        check_plugin_type(self.plugin_type)  # a kind the registry knows (plugins/registry.py), loaded or not
        check_plugin_config(self)  # types and ranges of the numeric and boolean fields (ctr_plugin/options.py)
        if self.pooling not in POOLINGS:
            raise CTRError(f"Unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}.")
        targets = self.lora_target_modules
        if not isinstance(targets, list | tuple) or not all(isinstance(t, str) and t for t in targets):
            raise CTRError(
                f"lora_target_modules must be a list of module names, e.g. ['q_lin', 'v_lin'], not {targets!r}."
            )
        self.lora_target_modules = tuple(targets)
        if self.tsm_activation not in TSM_ACTIVATIONS:
            raise CTRError(
                f"Unknown tsm_activation {self.tsm_activation!r}; choose one of {', '.join(TSM_ACTIVATIONS)}."
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["routing_kernel_sizes"] = list(self.routing_kernel_sizes)
        d["lora_target_modules"] = list(self.lora_target_modules)
        return d

    def save_json(self, path: str | os.PathLike) -> None:
        """Write the config as JSON (``plugin_type`` is its type tag); ``load_json`` reads it back."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> PluginConfig:
        """The config saved by ``save_json`` (or the ``plugin`` entry of a checkpoint's config)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CTRError(f"Could not read a plugin config from {str(path)!r} ({err}).") from None
        if isinstance(data, dict) and isinstance(data.get("plugin"), dict):  # a checkpoint's ctr_config.json
            data = data["plugin"]
        if not isinstance(data, dict):
            raise CTRError(f"{str(path)!r} does not hold a plugin config (a JSON object).")
        return cls.from_dict(data)

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
    ) -> PluginConfig:
        """The plugin config saved in a checkpoint: a local directory, or a Hub repo id whose
        ``ctr_config.json`` ``huggingface_hub.hf_hub_download`` fetches (or finds in the cache when
        offline), as peft's ``PeftConfig.from_pretrained``. A CheckpointError when there is none."""
        path = Path(checkpoint) / CHECKPOINT_CONFIG
        if not Path(checkpoint).is_dir():
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(str(checkpoint), CHECKPOINT_CONFIG, revision=revision, token=token))
            except (ValueError, OSError) as err:  # not a repo id, not found, offline and not cached
                raise CheckpointError(
                    f"{str(checkpoint)!r} is neither a checkpoint directory nor a Hub repo holding "
                    f"{CHECKPOINT_CONFIG} that could be fetched ({type(err).__name__}). Pass the `checkpoint/` "
                    "folder a training run wrote."
                ) from None
        try:
            data = json.loads(path.read_text())["plugin"]
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise CheckpointError(
                f"{str(path)!r} is not a ctr_plugin checkpoint config with a plugin entry "
                f"({type(err).__name__}: {err})."
            ) from None
        if not isinstance(data, dict):
            raise CheckpointError(f"The plugin entry of {str(path)!r} is not a JSON object: the file is damaged.")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict) -> PluginConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(
                f"The checkpoint's plugin config has fields this version of ctr_plugin does not "
                f"know: {unknown}. It was probably written by a newer ctr_plugin; upgrade the "
                f"package to load it."
            )
        data = dict(data)
        if "routing_kernel_sizes" in data:
            data["routing_kernel_sizes"] = tuple(data["routing_kernel_sizes"])
        return cls(**data)
