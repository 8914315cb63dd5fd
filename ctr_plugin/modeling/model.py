"""A frozen HF encoder carrying a plugin in every layer and one classification head per task.

``ContinualModel`` is what trains, what is saved and what serves predictions by task name. Its
seams are modules of their own, peft- and transformers-style:

* the plugin kind (``plugins/registry.py``) puts the plugins into the encoder and grows them per task;
* ``task_weights.py`` keeps each task's own copy of shared weights (one model per task, bert_one);
* ``prediction.py`` serves :meth:`ContinualModel.predict`;
* ``training_rules.py`` warns when a HAT-masked model is trained outside its method's rules;
* ``management.py``: peft's model management (trainable parameters, ``delete_task``,
  ``disable_plugins``, ``unload``); ``given_encoder.py`` unwraps and checks the encoder handed in;
* ``ctr_plugin/checkpoint/`` writes and reads checkpoints (``format.py``: plugins, heads, trained
  LayerNorms, HAT masks and the tokenizer; the frozen encoder is referenced, not copied) and
  the Hub (``hub.py``).
"""

from __future__ import annotations

import contextlib
import difflib
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ctr_plugin.checkpoint import hub
from ctr_plugin.checkpoint.format import load_checkpoint, read_config, save_checkpoint
from ctr_plugin.encoders.loading import BUNDLED_ENCODER, encoder_fingerprint
from ctr_plugin.errors import CTRError, TaskError
from ctr_plugin.modeling.given_encoder import check_encoder, unwrap_encoder
from ctr_plugin.modeling.management import EncoderOriginals, ModelManagement
from ctr_plugin.modeling.prediction import Prediction, predict
from ctr_plugin.modeling.scenario_heads import ScenarioHeads
from ctr_plugin.modeling.task_weights import TaskWeights
from ctr_plugin.modeling.training_rules import TrainingRules
from ctr_plugin.plugins.config import PluginConfig
from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.injection import injected_plugins
from ctr_plugin.plugins.lora import lora_layers
from ctr_plugin.plugins.plugin import Plugin
from ctr_plugin.plugins.registry import plugin_kind


def default_head_dropout(config) -> float:
    """As ``BertForSequenceClassification``: ``classifier_dropout``, else ``hidden_dropout_prob``, else 0.1."""
    for p in (getattr(config, "classifier_dropout", None), getattr(config, "hidden_dropout_prob", None)):
        if p is not None:
            return p
    return 0.1


class ContinualModel(TrainingRules, ModelManagement, nn.Module):
    """Encoder + plugins + per-task heads. The task of each example is given by its task id.
    ``method_rules`` (training under a method's rules) comes from ``training_rules.TrainingRules``;
    ``delete_task``, ``disable_plugins``, ``unload`` and the parameter counts from ``management.py``."""

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer,
        plugin_config: PluginConfig,
        encoder_name: str | None = None,
        head_dropout: float | None = None,
        train_encoder: bool = False,
    ):
        """The plugin kind ``plugin_config.plugin_type`` puts its plugins into ``encoder`` (in
        place); ``"none"`` injects nothing (frozen-encoder heads, or full fine-tuning with
        ``train_encoder=True``, in which case checkpoints hold the encoder too). ``head_dropout``
        defaults to the encoder config's, as in ``BertForSequenceClassification``
        (``classifier_dropout``, else ``hidden_dropout_prob``, else 0.1). A transformers task model
        (``*ForSequenceClassification``, ...) gives its base model; an encoder the kind cannot
        serve is refused before any work (``given_encoder.py``)."""
        super().__init__()
        encoder = unwrap_encoder(encoder)
        if any(isinstance(m, Plugin) for m in encoder.modules()) or lora_layers(encoder):
            raise CTRError(
                "This encoder already carries plugins (it belongs to another ContinualModel), so they would be "
                "injected twice. Pass a freshly loaded encoder (or a copy.deepcopy of one taken before any plugin "
                "was injected)."
            )
        check_encoder(encoder, plugin_config)
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.plugin_config = plugin_config
        self.kind = plugin_kind(plugin_config.plugin_type)  # plugins/registry.py
        self.encoder_name = encoder_name or BUNDLED_ENCODER
        self.hidden_size = encoder.config.hidden_size
        self.context = PluginContext(s=plugin_config.s_max)
        self.train_encoder = train_encoder
        # Taken before any training: a fine-tuned encoder (train_encoder) must still match the
        # fresh one a checkpoint is loaded onto.
        self.encoder_fingerprint = encoder_fingerprint(encoder)
        originals = EncoderOriginals(encoder)  # its own weights as given: management.py puts them back
        self.encoder.requires_grad_(train_encoder)
        self.kind.inject(self)
        self._encoder_originals: EncoderOriginals | None = originals.keep_trained(train_encoder)
        self.head_dropout = nn.Dropout(default_head_dropout(encoder.config) if head_dropout is None else head_dropout)
        self.heads = nn.ModuleList()
        self.task_names: list[str] = []
        self.label_names: list[list[str]] = []
        self.task_pairs: list[bool | None] = []  # whether each task reads text pairs (None: not recorded)
        self.task_sources: list[str | None] = []  # each task's data source and its terms (None: not recorded)
        # The continual-learning method that trains this model (its name); checkpoints record it.
        self.method_name: str | None = None
        self._rules_applied_by: str | None = None  # training_rules.TrainingRules: under whose rules it trains
        self._warned_unprotected = False
        self.task_weights = TaskWeights(self)  # each task's own copy of shared weights, if its method keeps one
        self.scenario = ScenarioHeads()  # scenario_heads.py: task/domain/class, per-task or shared head

    # ---- structure -------------------------------------------------------------------------
    @property
    def plugins(self) -> list[Plugin]:
        """The plugin modules injected into the encoder's sublayers (none for non-sublayer kinds)."""
        return injected_plugins(self.encoder)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def device(self) -> torch.device:
        return self.encoder.get_input_embeddings().weight.device

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[ContinualModel]:
        """The model in evaluation mode (no dropout) inside the block, and back in the mode it was
        in after it, also when the block raises."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

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
        self.scenario.check_new_task(self, name, label_names)  # Domain-IL: one label set; Class-IL: new classes

    def add_task(self, name: str, label_names: list[str], pair: bool | None = False, source: str | None = None) -> int:
        """Grow the plugins and add a head for a new task; return its task id. ``pair``: the
        task's examples are text pairs (``predict`` then needs the second texts). ``source``: one
        line saying where the task's data came from and under which terms (the model card shows it)."""
        label_names = list(label_names)
        self.check_new_task(name, label_names)
        self.kind.add_task(self, self.num_tasks)
        self.scenario.add_head(self, label_names)  # a head for the task, or the shared head grown
        self.task_names.append(name)
        self.label_names.append(label_names)
        self.task_pairs.append(pair)
        self.task_sources.append(source)
        return self.num_tasks - 1

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
        close = difflib.get_close_matches(str(task), self.task_names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TaskError(
            f"Unknown task {task!r}.{hint} This model knows {self.num_tasks} tasks: "
            f"{', '.join(self.task_names) or '(none)'}."
        )

    # ---- forward ---------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """Classify a batch whose examples may belong to different tasks.

        ``input_ids``, ``attention_mask``, ``token_type_ids``: (B, L) as the tokenizer gives them;
        ``task_ids``: (B,) long, the task of each example (required, except by a shared head:
        ``scenario_heads.py``); ``labels``: (B,) long, each example's label id within its own task
        (a shared head maps them to class-space ids). Returns a ``transformers``
        ``SequenceClassifierOutput`` whose ``logits`` are (B, K) with K the largest label count
        among the batch's tasks (a task with fewer labels has -inf in the columns it lacks; a shared
        head's K is every class seen so far) and
        whose ``loss`` is the mean cross-entropy when ``labels`` are given (else None). HAT's
        temperature is ``self.context.s`` (s_max; HAT's training rules anneal it with
        ``self.context.using(s=...)``).
        """
        self._refuse_if_unloaded("run the model")
        task_ids = self.scenario.checked_task_ids(self, task_ids, input_ids)  # None: no task (a shared head)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if task_ids is not None:
            self.task_weights.select(task_ids)
        self.context.task_ids = task_ids
        self.context.token_mask = attention_mask.to(self.encoder.dtype)
        self.context.active_tasks = self.num_tasks if task_ids is None else int(task_ids.max()) + 1
        try:
            types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # DistilBERT takes none
            out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **types)
        finally:
            self.context.task_ids = self.context.token_mask = None
        pooled = self.head_dropout(self._pool(out, attention_mask))
        logits = self.scenario.logits(self, pooled, task_ids)
        self._watch_for_unprotected_training(logits)  # training_rules.py: warns outside a method's rules
        loss = None
        if labels is not None:
            targets = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
            targets = targets if task_ids is None else self.scenario.class_labels(task_ids, targets)
            loss = F.cross_entropy(logits.float(), targets)
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

    def predict(
        self,
        texts: Iterable[str],
        task: str | int | Sequence[str | int] | None = None,
        pairs: Iterable[str | None] | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        score: str | None = None,
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
        defaults to 128 or the encoder's limit if lower. Without ``task``, the task is inferred
        (``score``: ``"msp"`` or ``"energy"``, ``task_inference.py``) or a shared head answers.
        """
        return predict(self, texts, task, pairs, batch_size, max_length, score)

    # ---- checkpoints (ctr_plugin/checkpoint/) --------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write the checkpoint: ``plugins.safetensors`` (plugins, heads, trained LayerNorms, HAT
        masks; never the frozen encoder), ``ctr_config.json``, the tokenizer files and a model card
        (``README.md``, with the Hub's YAML front matter: ``model_card.model_card``).

        ``extra`` adds fields to the config: ``method``, ``method_options``, ``seed``, ``training``
        and ``progress`` (the results so far: accuracy matrix and metrics) are shown in the card.
        Written atomically: a complete new directory replaces the old one, so a crash at any
        moment leaves either the old or the new checkpoint, never a mix. The config records the
        weights file's SHA-256, so that a foreign file of the same shapes is refused."""
        self._refuse_if_unloaded("save the model")
        save_checkpoint(self, directory, extra)

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
        self._refuse_if_unloaded("push the model")
        return hub.push_to_hub(self, repo_id, extra, private, token, revision, commit_message, create_pr)

    @staticmethod
    def read_config(directory: str | os.PathLike) -> dict:
        """The checkpoint's config, validated; a clear CheckpointError when it is not one."""
        return read_config(directory)

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
        is refused (architecture and an embedding fingerprint are compared). Checkpoints of
        older formats are converted as they are read (``checkpoint/legacy.py``).
        """
        return load_checkpoint(cls, directory_or_repo_id, encoder, device, revision, token, cache_dir)
