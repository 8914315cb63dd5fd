"""A frozen HF encoder carrying a plugin in every layer and one classification head per task.

``ContinualModel`` is what trains, what is saved (``save_pretrained``: plugins, heads, trained
LayerNorms, HAT masks and the tokenizer; the frozen encoder is referenced, not copied) and what
serves predictions by task name (``from_pretrained`` + ``predict``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import numbers
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ctr_plugin.errors import CheckpointError, CTRError, TaskError
from ctr_plugin.modeling.encoder import BUNDLED_ENCODER, encoder_fingerprint, load_encoder
from ctr_plugin.modeling.injection import inject_plugins
from ctr_plugin.plugins import Plugin, PluginConfig, PluginContext, build_plugin, plugin_kind
from ctr_plugin.plugins.ctr import join_format1_tensors
from ctr_plugin.plugins.lora import inject_lora, lora_layers

FORMAT_NAME = "ctr_plugin"
# 2: a CTR plugin's task capsules and routes are one tensor per kind, not one per task and kind
FORMAT_VERSION = 2
CONFIG_FILE = "ctr_config.json"
WEIGHTS_FILE = "plugins.safetensors"
CARD_FILE = "README.md"
HAT_PLUGIN_TYPES = ("ctr", "hat_adapter")  # plugins whose protection depends on HAT's training rules
TASK_WEIGHTS_PREFIX = "task_weights."  # + "<task id>.<parameter name>": one task's own copy


class UnprotectedTrainingWarning(UserWarning):
    """A HAT-masked model is trained without its method's rules: earlier tasks will be forgotten."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _is_repo_id(name: str) -> bool:
    """Whether ``name`` can only be a Hub repo id (``owner/name`` or ``name``), not a local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith((".", "/", "~")) or os.sep in name.replace("/", "") or name.count("/") > 1:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _checkpoint_directory(directory_or_repo_id: str | os.PathLike, revision: str | None, token: str | bool | None, cache_dir: str | os.PathLike | None) -> Path:
    """A local directory as it is; a Hub repo id as the local snapshot ``huggingface_hub`` keeps
    (downloaded, or read from the cache when offline)."""
    if Path(directory_or_repo_id).is_dir() or not _is_repo_id(str(directory_or_repo_id)):
        return Path(directory_or_repo_id)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        return Path(snapshot_download(str(directory_or_repo_id), revision=revision, token=token, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, OSError) as err:
        from huggingface_hub import constants

        offline = constants.HF_HUB_OFFLINE
        hint = (
            "HF_HUB_OFFLINE=1 is set and the repo is not in the hub cache: download it once with network access"
            if offline
            else "check the repo id, its revision and your access to it (a private repo needs a token)"
        )
        raise CheckpointError(
            f"{str(directory_or_repo_id)!r} is neither a local checkpoint directory nor a Hub repo this machine could "
            f"fetch ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); {hint}."
        ) from None


@dataclass
class Prediction:
    """The prediction for one text: the label name, its probability, the raw logits, the task."""

    label: str
    probability: float
    logits: list[float]
    task: str | None = None


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
        if any(isinstance(m, Plugin) for m in encoder.modules()) or lora_layers(encoder):
            raise CTRError(
                "This encoder already carries plugins (it belongs to another ContinualModel), so they would be "
                "injected twice. Pass a freshly loaded encoder (or a copy.deepcopy of one taken before any plugin "
                "was injected)."
            )
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
        self.task_sources: list[str | None] = []  # each task's data source and its terms (None: not recorded)
        # The continual-learning method that trains this model (its name); checkpoints record it.
        self.method_name: str | None = None
        # Set while a method's rules are applied to the training steps (``method_rules``); a
        # backward pass outside them warns once, since HAT's protection would silently be lost.
        self._rules_applied_by: str | None = None
        self._warned_unprotected = False
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

    def check_new_task(self, name: str, label_names: list[str]) -> None:
        """TaskError if :meth:`add_task` would refuse a task ``name`` with ``label_names``; changes nothing."""
        if not isinstance(name, str) or not name.strip():
            raise TaskError(f"A task needs a name (a non-empty string), got {name!r}.")
        label_names = list(label_names)
        if len(label_names) < 2 or len(set(map(str, label_names))) != len(label_names):
            raise TaskError(
                f"Task {name!r} needs at least two distinct label names, got {label_names!r}. Pass the class names "
                f"in the order of the label ids (label 0 first)."
            )
        if name in self.task_names:
            raise TaskError(
                f"The model already has a task named {name!r} (task id {self.task_names.index(name)}). "
                f"Give the new task a different name."
            )

    def add_task(self, name: str, label_names: list[str], pair: bool | None = False, source: str | None = None) -> int:
        """Grow every plugin and add a head for a new task; return its task id. ``pair``: the
        task's examples are text pairs (``predict`` then needs the second texts). ``source``: one
        line saying where the task's data came from and under which terms (the model card shows it)."""
        label_names = list(label_names)
        self.check_new_task(name, label_names)
        for plugin in self.plugins:
            plugin.add_task()
            plugin.to(self.device)
        if self.placement == "lora_per_task":
            self._add_task_lora(self.num_tasks)
        self.heads.append(nn.Linear(self.hidden_size, len(label_names)).to(self.device))
        self.task_names.append(name)
        self.label_names.append(label_names)
        self.task_pairs.append(pair)
        self.task_sources.append(source)
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
    @contextlib.contextmanager
    def method_rules(self, method_name: str):
        """Marks the training steps taken inside as governed by ``method_name``'s rules (the loop
        and ``ContinualTrainer`` use it); outside it, a backward pass through a HAT-masked model
        in training mode warns (``UnprotectedTrainingWarning``, once per model)."""
        previous, self._rules_applied_by = self._rules_applied_by, method_name
        try:
            yield self
        finally:
            self._rules_applied_by = previous

    def _warn_if_unprotected(self, _grad: torch.Tensor | None = None) -> None:
        """Warn, once, that a HAT-masked model is being trained without its method's rules."""
        if self._warned_unprotected:
            return
        self._warned_unprotected = True
        warnings.warn(
            "This ContinualModel's plugins are HAT-masked, and it is being trained outside "
            "ctr_plugin's rules (a plain optimizer loop, or transformers' Trainer): HAT's gradient "
            "masking, gradient compensation, temperature schedule and mask accumulation are not "
            "applied, so earlier tasks' weights WILL change (forgetting) and the task trained now "
            "will not be protected later. Train with ctr_plugin.ContinualLearner or "
            "ctr_plugin.ContinualTrainer instead.",
            UnprotectedTrainingWarning,
            stacklevel=2,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        s: float | None = None,
    ) -> SequenceClassifierOutput:
        """Classify a batch whose examples may belong to different tasks.

        ``input_ids``, ``attention_mask``, ``token_type_ids``: (B, L) as the tokenizer gives them;
        ``task_ids``: (B,) long, the task of each example (required); ``labels``: (B,) long, each
        example's label id within its own task. Returns a ``transformers``
        ``SequenceClassifierOutput`` whose ``logits`` are (B, K) with K the largest label count
        among the batch's tasks (a task with fewer labels has -inf in the columns it lacks) and
        whose ``loss`` is the mean cross-entropy when ``labels`` are given (else None). ``s`` is
        HAT's temperature (s_max if None; the training rules anneal it). A model with one copy of
        its weights per task puts the batch's task's copy in place first.
        """
        if task_ids is None:
            raise TaskError(
                "ContinualModel.forward needs task_ids: a (batch,) tensor of task ids, one per example "
                f"(this model's tasks: {', '.join(f'{i}={n}' for i, n in enumerate(self.task_names)) or 'none yet'})."
            )
        task_ids = torch.as_tensor(task_ids, dtype=torch.long, device=input_ids.device)
        if task_ids.ndim == 0:
            task_ids = task_ids.expand(input_ids.shape[0])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.num_tasks == 0 or int(task_ids.min()) < 0 or int(task_ids.max()) >= self.num_tasks:
            raise TaskError(
                f"task_ids {sorted(set(task_ids.tolist()))} are out of range: this model has {self.num_tasks} tasks "
                f"(ids 0..{self.num_tasks - 1}). Add a task with model.add_task(name, labels) first."
            )
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
            logits = self.heads[tasks[0]](pooled)
        else:
            width = max(len(self.label_names[t]) for t in tasks)
            logits = pooled.new_full((pooled.shape[0], width), float("-inf"))
            for t in tasks:
                rows = task_ids == t
                logits[rows, : len(self.label_names[t])] = self.heads[t](pooled[rows])
        if self.training and logits.requires_grad and self._rules_applied_by is None and not self._warned_unprotected and self.plugin_config.plugin_type in HAT_PLUGIN_TYPES:
            logits.register_hook(self._warn_if_unprotected)  # warns when a backward pass goes through it
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), torch.as_tensor(labels, dtype=torch.long, device=logits.device))
        return SequenceClassifierOutput(loss=loss, logits=logits)

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
    def predict(
        self,
        texts: Iterable[str],
        task: str | int | Sequence[str | int],
        pairs: Iterable[str | None] | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> list[Prediction]:
        """Classify ``texts`` (and, for a text-pair task, their second texts ``pairs``).

        ``task`` is one task (a name or an integer id, numpy integers too) for every text, or a
        list with one task per text: then texts of different tasks share batches (one forward
        pass serves several tasks) and each gets the same result as in a call for its task alone.
        ``texts`` and ``pairs`` may be any iterables of strings (not a bare string); in a
        mixed-task call, ``pairs`` holds None for the texts of single-text tasks. Empty or
        whitespace-only texts are refused, as in training (there is nothing to classify); so is a
        single text for a task trained on pairs, and a pair for a task trained on single texts.
        Deterministic, and independent of the batch size and of the other texts: texts are
        batched by length for speed and returned in the order given. ``max_length`` (tokens)
        defaults to 128 or the encoder's limit if lower.
        """
        texts = _checked_texts(texts, "texts")
        mixed = not isinstance(task, (str, numbers.Integral))
        if mixed:
            if not isinstance(task, Iterable):
                raise TaskError(f"predict(): task must be a task name or id, or a list of them (one per text), got {type(task).__name__}.")
            per_text = [self.task_id(t) for t in task]
            if len(per_text) != len(texts):
                raise CTRError(f"predict() got {len(texts)} texts but {len(per_text)} tasks: give one task per text, or one task for all.")
        else:
            per_text = [self.task_id(task)] * len(texts)
        if pairs is not None:
            pairs = list(pairs) if mixed and not isinstance(pairs, (str, bytes)) else _checked_texts(pairs, "pairs")
            if len(pairs) != len(texts):
                raise CTRError(f"predict() got {len(texts)} texts but {len(pairs)} pairs: give one second text per text.")
            given = [i for i, p in enumerate(pairs) if p is not None]
            _checked_texts([pairs[i] for i in given], "pairs")
            if not given:
                pairs = None
        for t in sorted(set(per_text)):
            rows = [i for i, x in enumerate(per_text) if x == t]
            with_pair = [i for i in rows if pairs is not None and pairs[i] is not None]
            if self.task_pairs[t] and len(with_pair) < len(rows):
                raise CTRError(
                    f"Task {self.task_names[t]!r} was trained on text pairs (e.g. aspect + sentence): give the second "
                    f"texts too (pairs=[...] in Python, --pair on the command line)."
                )
            if self.task_pairs[t] is False and with_pair:
                raise CTRError(f"Task {self.task_names[t]!r} was trained on single texts: call predict() without pairs for its texts.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise CTRError(f"predict(): batch_size is {batch_size!r}; it must be a whole number >= 1.")
        from ctr_plugin.options import check_max_length, position_limit

        if max_length is None:  # 128 tokens, or fewer where the encoder takes fewer
            max_length = min(128, position_limit(self.tokenizer, self.encoder.config) or 128)
        check_max_length(max_length, self.tokenizer, self.encoder.config, pair=pairs is not None)

        def has_pair(i: int) -> bool:
            return pairs is not None and pairs[i] is not None

        # Batches never mix single texts with pairs (they tokenize differently), nor tasks where a
        # model holds one copy of its weights per task; otherwise by length, across tasks.
        def batch_key(i: int):
            return (has_pair(i), per_text[i] if self.task_weights else 0)

        order = sorted(range(len(texts)), key=lambda i: (*batch_key(i), len(texts[i]) + (len(pairs[i]) if has_pair(i) else 0)))
        batches: list[list[int]] = []
        for i in order:
            if batches and len(batches[-1]) < int(batch_size) and batch_key(batches[-1][0]) == batch_key(i):
                batches[-1].append(i)
            else:
                batches.append([i])
        was_training = self.training
        self.eval()
        results: list[Prediction | None] = [None] * len(texts)
        try:
            for idx in batches:
                second = [pairs[i] for i in idx] if has_pair(idx[0]) else None
                batch = self.tokenize([texts[i] for i in idx], second, int(max_length))
                task_ids = torch.tensor([per_text[i] for i in idx], dtype=torch.long, device=self.device)
                logits = self(**batch, task_ids=task_ids).logits.float()
                for row, i in enumerate(idx):
                    names = self.label_names[per_text[i]]
                    own = logits[row, : len(names)]  # a task with fewer labels than the batch's widest
                    probs = own.softmax(-1)
                    k = int(probs.argmax())
                    results[i] = Prediction(names[k], float(probs[k]), own.tolist(), self.task_names[per_text[i]])
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
            "tasks": [
                {"name": n, "labels": labels, "pair": pair} | ({"source": source} if source is not None else {})
                for n, labels, pair, source in zip(self.task_names, self.label_names, self.task_pairs, self.task_sources)
            ],
            "task_weights": sorted(self.task_weights),  # tasks with their own copy of the shared weights
        } | ({"method": self.method_name} if self.method_name else {})

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the checkpoint: ``plugins.safetensors`` (plugins, heads, trained LayerNorms, HAT
        masks; never the frozen encoder), ``ctr_config.json``, the tokenizer files and a model card
        (``README.md``, with the Hub's YAML front matter: ``model_card.model_card``).

        ``extra`` adds fields to the config: ``method``, ``method_options``, ``seed``, ``training``
        and ``progress`` (the results so far: accuracy matrix and metrics) are shown in the card.
        Written atomically: a complete new directory replaces the old one, so a crash at any
        moment leaves either the old or the new checkpoint, never a mix. The config records the
        weights file's SHA-256, so that a foreign file of the same shapes is refused."""
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
            from ctr_plugin.checkpoint.model_card import model_card

            (staging / CARD_FILE).write_text(model_card(config), encoding="utf-8")
            old = directory.with_name(f".{directory.name}.old")
            if directory.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def push_to_hub(
        self,
        repo_id: str,
        extra: dict | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload ctr_plugin checkpoint",
        create_pr: bool = False,
    ):
        """Save the checkpoint (as ``save_pretrained``, model card included) and upload it to the
        Hub repo ``repo_id`` (created if missing) through ``huggingface_hub.HfApi``; returns the
        commit info. Only the checkpoint's files go up: the frozen encoder is referenced by name,
        never uploaded (a model that fine-tunes its encoder, ``bert_ncl``/``bert_one``, holds its
        trained weights in ``plugins.safetensors``). Load it back with
        ``ContinualModel.from_pretrained(repo_id, encoder=...)``."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "checkpoint"
            self.save_pretrained(folder, extra=extra)
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=str(folder),
                repo_type="model",
                revision=revision,
                commit_message=commit_message,
                create_pr=create_pr,
            )

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
    def from_pretrained(
        cls,
        directory_or_repo_id: str | os.PathLike,
        encoder: str | nn.Module | None = None,
        device: str | torch.device = "cpu",
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> ContinualModel:
        """Load a checkpoint from a local directory or a Hugging Face Hub repo id.

        A repo id (``owner/name``) is fetched through ``huggingface_hub.snapshot_download`` at
        ``revision`` into the hub cache (``cache_dir``, else ``HF_HUB_CACHE``); with
        ``HF_HUB_OFFLINE=1`` it is read from the cache. ``encoder`` is the frozen encoder: an
        already loaded module (used as it is, and given the plugins in place, so a server holding
        the encoder does not load it twice), a hub name or a local directory; None takes the one
        recorded in the checkpoint. An encoder other than the one the checkpoint was trained on
        is refused (architecture and an embedding fingerprint are compared).
        """
        directory = _checkpoint_directory(directory_or_repo_id, revision, token, cache_dir)
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
        if isinstance(encoder, nn.Module):
            encoder_module, encoder_name = encoder, stored["name_or_path"]
        else:
            encoder_module, _ = load_encoder(encoder or stored["name_or_path"])
            encoder_name = stored["name_or_path"]
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
        model = cls(encoder_module, tokenizer, PluginConfig.from_dict(config["plugin"]), encoder_name, config.get("head_dropout", 0.1), config.get("train_encoder", False))
        model.method_name = config.get("method")
        for task in config["tasks"]:
            model.add_task(task["name"], task["labels"], pair=task.get("pair"), source=task.get("source"))
        per_task = {k: v for k, v in state.items() if k.startswith(TASK_WEIGHTS_PREFIX)}
        state = {k: v for k, v in state.items() if k not in per_task}
        model._load_task_weights(per_task, config.get("task_weights", []), weights)
        if config["format_version"] < 2:
            state = join_format1_tensors(state, model.plugin_config.freeze_old_capsules)
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
