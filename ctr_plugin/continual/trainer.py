"""Train one task of a :class:`ContinualModel` with ``transformers.Trainer``, under the method's rules.

A plain ``Trainer`` would train the plugins but silently drop what protects earlier tasks. This
subclass puts the method's hooks where the loop (``ctr_plugin.continual.loop``) puts them:

* the forward pass of every training batch gets the method's arguments (HAT's temperature s,
  annealed over each epoch) and the loss is the method's (cross-entropy + HAT's mask regulariser,
  or L2's / LwF's terms) — ``compute_loss``;
* after the backward pass of the last micro-batch before an optimizer step, and so BEFORE the
  Trainer clips the gradients, the method's ``before_step`` (HAT: gradients of units earlier
  tasks use are zeroed, the mask embeddings' gradients compensated) — ``training_step``;
* after each optimizer step the method's ``after_step`` (HAT: embeddings clamped) — a callback;
* the optimizer groups are the loop's (no weight decay on HAT's parameters, the mask embeddings'
  own learning rate) — ``create_optimizer``;
* before training the method's ``before_task``, after it ``after_task`` (HAT: the task's masks
  are accumulated into m_pre, which protects them from then on) — ``train``.

One ``ContinualTrainer`` trains one task (``task=``, added to the model before): make a new one
for the next task, so that each task gets a fresh optimizer, as the loop does. The Trainer's own
evaluation, logging, mixed precision and devices work as usual; ``save_model`` writes a
ctr_plugin checkpoint (``ContinualModel.save_pretrained``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from ctr_plugin.checkpoint.format import CONFIG_FILE
from ctr_plugin.continual.learner import resolve_method
from ctr_plugin.continual.loop import parameter_groups
from ctr_plugin.continual.methods import ContinualMethod, Step
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.python import check_tokenized_splits
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel


@dataclass
class TaskCollator:
    """Pads a batch with ``base`` (default: ``DataCollatorWithPadding`` on the model's tokenizer)
    and adds ``task_ids``: each example's own ``task_ids`` where the dataset has that column,
    else ``task_id`` for all."""

    base: Any
    task_id: int

    def __call__(self, features: list[dict]) -> dict:
        own = [f.get("task_ids") for f in features]
        batch = self.base([{k: v for k, v in f.items() if k != "task_ids"} for f in features])
        ids = own if all(t is not None for t in own) else [self.task_id] * len(features)
        batch["task_ids"] = torch.tensor([int(t) for t in ids], dtype=torch.long)
        return batch


class _MethodHooks(TrainerCallback):
    """The method's hooks that belong after the optimizer step and at each epoch's start."""

    def __init__(self, trainer: ContinualTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer._epoch_started()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.continual_method.after_step(self.trainer.continual_model, self.trainer._step)


class ContinualTrainer(Trainer):
    """``transformers.Trainer`` for one task of a :class:`ContinualModel`, with the method's rules.

    ``task``: the task to train (a name or id; ``model.add_task(name, labels)`` first).
    ``method``: a name, a method object, or None for the one that made the model. A method that
    keeps state across tasks in its object (L2's anchors, bert_one's initial weights) needs the
    same object for every task: pass it. Methods that read each task's training examples in their
    hooks (``needs_task_data``: ``ewc``, ``replay``) are not supported here (use
    :class:`ctr_plugin.ContinualLearner`); neither is ``bert_mtl`` (all tasks at once). The
    datasets hold tokenized examples (``input_ids``, ``attention_mask``, ``label`` or ``labels``,
    and optionally ``task_ids``); the default collator pads them and adds the task id.
    ``load_best_model_at_end`` and ``resume_from_checkpoint`` are not supported. Everything else
    is ``Trainer``'s.

    """

    def __init__(
        self,
        model: ContinualModel,
        args: TrainingArguments | None = None,
        *,
        task: str | int,
        method: str | ContinualMethod | None = None,
        method_options: dict | None = None,
        data_collator=None,
        **kwargs,
    ):
        if not isinstance(model, ContinualModel):
            raise CTRError(f"ContinualTrainer trains a ctr_plugin ContinualModel, got {type(model).__name__}.")
        given = method
        method = resolve_method(method or model.method_name, method_options, model.plugin_config.plugin_type)
        if type(method).plugin_type != model.plugin_config.plugin_type:
            raise CTRError(
                f"Method {method.name!r} trains plugin_type {type(method).plugin_type!r}, "
                f"but this model carries {model.plugin_config.plugin_type!r} plugins."
            )
        if method.joint_training or method.needs_task_data:
            raise CTRError(
                f"Method {method.name!r} cannot be trained through ContinualTrainer ("
                + (
                    "it learns all tasks at once"
                    if method.joint_training
                    else "it needs each task's raw texts after or during training"
                )
                + "): use ctr_plugin.ContinualLearner."
            )
        self.continual_model = model
        self.continual_method = method
        self.task_id = model.task_id(task)
        if self.task_id > 0 and not method.resumable and not isinstance(given, ContinualMethod):
            raise CTRError(
                f"Method {method.name!r} keeps state across tasks in its object: pass the same method object that "
                f"trained the earlier tasks (method=...), not its name."
            )
        if args is not None and args.load_best_model_at_end:
            raise CTRError(
                "load_best_model_at_end is not supported: the Trainer would reload weights in its own format. "
                "Keep the last epoch, or select epochs with ContinualLearner."
            )
        check_tokenized_splits(  # the checks of the file loader and of learn_task
            model.task_names[self.task_id],
            model.label_names[self.task_id],
            model.tokenizer,
            {"train": kwargs.get("train_dataset"), "validation": kwargs.get("eval_dataset")},
        )
        collator = data_collator or DataCollatorWithPadding(model.tokenizer)
        super().__init__(model=model, args=args, data_collator=TaskCollator(collator, self.task_id), **kwargs)
        self.add_callback(_MethodHooks(self))
        self._step = Step(self.task_id, 0, 0, 1, 1)
        self._epoch, self._batch, self._num_batches, self._num_epochs = -1, 0, 1, 1

    # ---- the method's rules ------------------------------------------------------------------
    def create_optimizer(self, model=None):
        """The Trainer's optimizer class and settings over the loop's parameter groups."""
        if self.optimizer is None:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.continual_model)
            groups = parameter_groups(
                self.continual_model, self.continual_method, self.args.learning_rate, self.args.weight_decay
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _epoch_started(self) -> None:
        self._epoch += 1
        self._batch = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """In training, the method's forward arguments and loss for the current step; in
        evaluation, the model's own cross-entropy."""
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        if labels is None:
            raise CTRError("ContinualTrainer needs labels in every batch (a `label` or `labels` column).")
        if not model.training:
            outputs = model(**inputs, labels=labels)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        self._step = Step(self.task_id, max(self._epoch, 0), self._batch, self._num_batches, self._num_epochs, inputs)
        with self.continual_model.context.using(
            **self.continual_method.plugin_inputs(self.continual_model, self._step)
        ):
            outputs = model(**inputs)
        labels = self.continual_model.scenario.class_labels(inputs["task_ids"], labels)  # a shared head's ids
        outputs.loss = self.continual_method.loss(self.continual_model, outputs.logits.float(), labels, self._step)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The last micro-batch before an optimizer step: the gradients are complete, and the
        # Trainer clips them next, so HAT's masking and compensation come here, before clipping.
        if self.accelerator.sync_gradients:
            self.continual_method.before_step(self.continual_model, self._step)
        self._batch += 1
        return loss

    def train(self, resume_from_checkpoint=None, **kwargs):
        """Train the task under the method's rules: ``before_task``, the Trainer's loop,
        ``after_task`` (HAT: the task's masks join m_pre and are protected from then on)."""
        model, method = self.continual_model, self.continual_method
        if resume_from_checkpoint:
            raise CTRError(
                "resume_from_checkpoint is not supported: the Trainer would reload weights in its own format, and the "
                "method's state at that step is not in its checkpoint. Train the task again from its start."
            )
        try:
            self._num_batches = max(1, len(self.get_train_dataloader()))
        except TypeError:
            raise CTRError(
                "ContinualTrainer needs a training dataset with a length: "
                "HAT's temperature anneals over each epoch's batches."
            ) from None
        self._num_epochs = (
            max(1, math.ceil(self.args.num_train_epochs))
            if self.args.max_steps <= 0
            else max(1, math.ceil(self.args.max_steps / self._num_batches))
        )
        if self.task_id == 0:
            method.before_sequence(
                model,
                [],
                TrainingConfig(batch_size=self.args.per_device_train_batch_size, seed=self.args.seed, progress=False),
            )
        with model.method_rules(method.name):
            method.before_task(model, self.task_id, None)
            output = super().train(**kwargs)
            method.after_task(model, self.task_id, None)
        model.method_name = method.name
        return output

    # ---- saving ------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        """Write a ctr_plugin checkpoint (plugins, heads, masks, tokenizer, model card) to
        ``output_dir``, which it replaces: a directory holding anything else is refused."""
        directory = Path(output_dir or self.args.output_dir)
        if directory.is_dir() and any(directory.iterdir()) and not (directory / CONFIG_FILE).is_file():
            raise CTRError(
                f"save_model() replaces {directory} with the checkpoint, and it holds other files "
                f"({', '.join(sorted(p.name for p in directory.iterdir())[:3])}, ...): pass a new or empty directory."
            )
        if self.args.should_save:
            self.continual_model.save_pretrained(
                directory,
                extra={"method": self.continual_method.name, "method_options": self.continual_method.options()},
            )
