"""Managing a model as peft users know it: what trains, deleting a task, and the encoder without
its plugins (``ContinualModel`` takes these from :class:`ModelManagement`).

* :meth:`~ModelManagement.print_trainable_parameters` and
  :meth:`~ModelManagement.trainable_parameter_count` (peft's wording and numbers);
* :meth:`~ModelManagement.delete_task`: a task's head and its own plugin parts go, where that
  leaves every other task's outputs as they were; refused, saying why, where it would not;
* :meth:`~ModelManagement.disable_plugins` (peft's ``disable_adapter``) and
  :meth:`~ModelManagement.unload` (peft's ``unload``).

The plugins change an encoder in two ways: the modules their kind puts into it (bypassed and
taken out by the kind: ``PluginKind.disabled`` and ``PluginKind.remove``) and the encoder's own
weights the model trains beside them (the LayerNorm after each plugin, ``train_layernorm``). Those
are copied as the model found them when it is built (:class:`EncoderOriginals`) and put back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from ctr_plugin.errors import CTRError, TaskError

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel

log = logging.getLogger(__name__)


class EncoderOriginals:
    """An encoder's own parameters as a model found them: whether each was trainable, and a CPU
    copy of those the model trains beside its plugins (taken by :meth:`keep_trained`)."""

    def __init__(self, encoder: nn.Module):
        self.trainable = [(p, p.requires_grad) for p in encoder.parameters()]
        self.values: list[tuple[nn.Parameter, torch.Tensor]] = []
        self.fine_tuned = False

    def keep_trained(self, train_encoder: bool) -> EncoderOriginals:
        """Once the plugins are in: copy the encoder's own parameters that now train (none with
        ``train_encoder``: the whole encoder is fine-tuned, and no copy of it is kept)."""
        self.fine_tuned = train_encoder
        if not train_encoder:
            self.values = [(p, p.detach().to("cpu", copy=True)) for p, _ in self.trainable if p.requires_grad]
        return self

    def unkept(self) -> list[nn.Parameter]:
        """The encoder's own parameters that train now and whose original values are not kept."""
        kept = {id(p) for p, _ in self.values}
        return [p for p, _ in self.trainable if p.requires_grad and id(p) not in kept]

    @torch.no_grad()
    def put_back(self) -> None:
        for param, value in self.values:
            param.copy_(value)


class ModelManagement:
    """peft's model management for :class:`~ctr_plugin.modeling.model.ContinualModel`."""

    # ---- what trains -----------------------------------------------------------------------------
    def trainable_parameter_count(self: ContinualModel) -> tuple[int, int]:
        """(trainable parameters, all parameters), as peft's ``get_nb_trainable_parameters``: the
        frozen encoder, the plugins and the heads (each shared parameter once)."""
        trainable = total = 0
        for param in self.parameters():
            total += param.numel()
            trainable += param.numel() if param.requires_grad else 0
        return trainable, total

    def print_trainable_parameters(self: ContinualModel) -> None:
        """Print ``trainable params: N || all params: M || trainable%: P``, as peft does."""
        trainable, total = self.trainable_parameter_count()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    # ---- deleting a task -------------------------------------------------------------------------
    def delete_task(self: ContinualModel, task: str | int) -> dict[str, tuple[int, int]]:
        """Delete task ``task`` (a name or an id): its head, its own plugin parts (a per-task
        adapter or LoRA adapter, its HAT mask embeddings, its copy of per-task weights) and its
        name, labels and source. Every other task's predictions stay exactly as they were.

        The tasks after it take the ids one lower, in order (a task is addressed by name, and
        its parts move with it); the returned mapping, also logged, gives each moved task's
        (old id, new id). Refused with a TaskError, changing nothing, where its parts are shared
        with other tasks so that their outputs would change: in a ``ctr`` model every later task
        routes through an earlier task's capsule, so only the last-added task can be deleted.
        HAT's cumulative mask frees the units only the deleted task claimed."""
        t = self.task_id(task)
        name = self.task_names[t]
        reason = self.kind.delete_task_refused(self, t)
        if self.scenario.shared_head:  # scenario_heads.py
            reason = "its classes are rows of the one head every task shares (a shared-head Domain-/Class-IL model)"
        if reason:
            raise TaskError(
                f"Cannot delete task {name!r} (id {t}) from this {self.kind.name!r} model: {reason}. "
                "Nothing was changed."
            )
        self.kind.delete_task(self, t)
        self.task_weights.drop(t)
        del self.heads[t]
        self.scenario.remove_task(t)
        for per_task in (self.task_names, self.label_names, self.task_pairs, self.task_sources):
            del per_task[t]
        moved = {n: (i + 1, i) for i, n in enumerate(self.task_names) if i >= t}
        log.warning(
            "Deleted task %r (id %d).%s",
            name,
            t,
            " Task ids moved: " + ", ".join(f"{n} {a} -> {b}" for n, (a, b) in moved.items()) if moved else "",
        )
        return moved

    # ---- the encoder without its plugins ---------------------------------------------------------
    def _check_plain_encoder_kept(self: ContinualModel, doing: str) -> EncoderOriginals:
        originals = self._encoder_originals
        if originals is None:
            raise CTRError(f"Cannot {doing}: unload() already gave this model's encoder back; build a new model.")
        if originals.fine_tuned:
            raise CTRError(
                f"Cannot {doing}: this model fine-tunes its encoder's own weights (train_encoder=True, method "
                f"{self.method_name!r}) and keeps no copy of them as loaded. Load the encoder afresh instead."
            )
        unkept = originals.unkept()
        if unkept:
            names = {id(p): n for n, p in self.encoder.named_parameters()}
            listed = ", ".join(names.get(id(p), "?") for p in unkept[:3])
            raise CTRError(
                f"Cannot {doing}: {len(unkept)} of the encoder's own weights were made trainable after the model was "
                f"built ({listed}{', ...' if len(unkept) > 3 else ''}), and their values as loaded are not kept."
            )
        return originals

    @contextlib.contextmanager
    def disable_plugins(self: ContinualModel) -> Iterator[ContinualModel]:
        """Inside the block the encoder runs as loaded, with no plugin effect (peft's
        ``disable_adapter``): the plugins are bypassed and the encoder's weights the model trains
        (the LayerNorms after the plugins) hold their values as loaded. Everything is as before
        after the block, also when it raises. Refused for a model that fine-tunes its encoder."""
        originals = self._check_plain_encoder_kept("disable the plugins")
        trained = [(param, param.detach().clone()) for param, _ in originals.values]
        with self.kind.disabled(self):
            try:
                originals.put_back()
                yield self
            finally:
                with torch.no_grad():
                    for param, value in trained:
                        param.copy_(value)

    def unload(self: ContinualModel) -> nn.Module:
        """Take the plugins out of the encoder and return it as it was loaded (peft's ``unload``):
        the injected wrappers undone (the sublayers' own dropout and projections back in place),
        the weights the model trained beside them restored, each parameter as trainable as it was.
        It can be given to a new model. This model is spent: it refuses to run or save
        afterwards."""
        originals = self._check_plain_encoder_kept("unload")
        encoder = self.encoder
        self.kind.remove(self)
        originals.put_back()
        for param, flag in originals.trainable:
            param.requires_grad_(flag)
        self._encoder_originals = None
        return encoder

    def _refuse_if_unloaded(self: ContinualModel, doing: str) -> None:
        if self._encoder_originals is None:
            raise CTRError(
                f"Cannot {doing}: unload() gave this model's encoder back without its plugins. Build a new model "
                "(get_continual_model) or load a checkpoint."
            )
