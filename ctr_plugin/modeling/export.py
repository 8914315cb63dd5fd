"""Export a trained model for a fixed set of tasks: one ``torch.export`` program per task, and ONNX.

A serving graph takes token tensors and gives one task's logits. ``ContinualModel.forward`` cannot
be that graph as it is: it reads each example's task id back to the host (the range check, the
tasks present in the batch, the head of each), which ``torch.export`` cannot trace with the batch
and sequence sizes left dynamic. For a task fixed at export time the task is a Python int, so
:class:`OneTaskForward` runs the same steps as ``forward`` (the plugins read the task from the
context, set by ``PluginContext.one_task``; the pooling; the task's head) with nothing that depends
on the inputs' values.

    programs = export_for_tasks(model, ["laptops", "sst2"])     # {task name: ExportedProgram}
    logits = programs["laptops"].module()(input_ids, attention_mask, token_type_ids)
    export_onnx(model, "laptops", "laptops.onnx")                # needs onnx and onnxscript

Each program's inputs are ``input_ids`` and ``attention_mask`` (B, L) long (and ``token_type_ids``
where the tokenizer gives them), with B from 1 up and L from 1 to ``max_length``; its output is the
task's logits (B, K) in float. A plugin whose forward itself reads tensor values back to the host
cannot be exported this way: :func:`export_for_tasks` says which kind and what torch.export met.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.export import Dim

from ctr_plugin.errors import CTRError
from ctr_plugin.options import check_max_length, position_limit

if TYPE_CHECKING:
    from ctr_plugin.modeling.model import ContinualModel

SAMPLE_TEXTS = ["an example", "an example text a little longer"]  # shapes for tracing only: B and L stay dynamic


class OneTaskForward(nn.Module):
    """``ContinualModel.forward`` for batches of one task, fixed when built: logits (B, K_task)."""

    def __init__(self, model: ContinualModel, task: int):
        super().__init__()
        self.model, self.task = model, task

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        model = self.model
        token_mask = attention_mask.to(model.encoder.dtype)
        types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        with model.context.one_task(self.task, token_mask):  # the task known here: the plugins read nothing back
            out = model.encoder(input_ids=input_ids, attention_mask=attention_mask, **types)
        return model.scenario.head_logits(model, self.task, model.head_dropout(model._pool(out, attention_mask)))


def _sample_inputs(model: ContinualModel, max_length: int) -> dict[str, torch.Tensor]:
    batch = model.tokenize(SAMPLE_TEXTS, max_length=max_length)
    if "token_type_ids" in model.tokenizer.model_input_names and "token_type_ids" not in batch:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _where(err: Exception) -> str:
    """The first line of torch.export's error, and the line of code it names where it names one."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
    marker = next((i for i, line in enumerate(lines) if line.startswith("The following call raised")), None)
    at = f" at {lines[marker + 1]}: {lines[marker + 2]}" if marker is not None and marker + 2 < len(lines) else ""
    return f"{type(err).__name__}: {lines[0]}{at}"


def export_for_tasks(
    model: ContinualModel, tasks: Sequence[str | int], max_length: int | None = None
) -> dict[str, torch.export.ExportedProgram]:
    """One ``torch.export`` program per task of ``tasks`` (names or ids), keyed by task name:
    ``program.module()(input_ids, attention_mask[, token_type_ids])`` gives the task's logits, as
    ``model(..., task_ids=<that task>).logits`` in evaluation mode. The batch size is dynamic from
    1, the sequence length from 1 to ``max_length`` (default: the encoder's position limit, else
    512). A model holding one copy of its weights per task (``bert_one``) is refused; so is a task
    whose weights its checkpoint lacks. A CTRError names the plugin kind when torch.export cannot
    trace it (the cause chained)."""
    model._refuse_if_unloaded("export the model")
    if isinstance(tasks, (str, int)):
        tasks = [tasks]
    ids = [model.task_id(t) for t in tasks]
    if not ids:
        raise CTRError("export_for_tasks() needs at least one task to export.")
    if len(model.task_weights):
        raise CTRError(
            "This model holds one copy of its encoder's weights per task (bert_one); export_for_tasks() exports "
            "models whose tasks share the encoder. Export each task from its own model instead."
        )
    if max_length is None:
        max_length = position_limit(model.tokenizer, model.encoder.config) or 512
    check_max_length(max_length, model.tokenizer, model.encoder.config)
    inputs = _sample_inputs(model, max_length)
    batch, length = Dim("batch", min=1), Dim("sequence", min=1, max=int(max_length))
    dynamic = {name: {0: batch, 1: length} for name in inputs}
    programs = {}
    with model.evaluating():
        for task in ids:
            model.task_weights.select(torch.tensor([task]))  # refuses a task whose weights the checkpoint lacks
            try:
                programs[model.task_names[task]] = torch.export.export(
                    OneTaskForward(model, task), (), inputs, dynamic_shapes=dynamic, strict=False
                )
            except Exception as err:  # torch.export's errors share no base class narrower than this
                raise CTRError(
                    f"torch.export could not trace the {model.plugin_config.plugin_type!r} plugin for task "
                    f"{model.task_names[task]!r}: {_where(err)} (the full error is chained above; a plugin that "
                    "reads tensor values back to the host cannot be exported)."
                ) from err
    return programs


def export_onnx(
    model: ContinualModel, task: str | int, path: str | os.PathLike, max_length: int | None = None
) -> Path:
    """Write task ``task``'s program (:func:`export_for_tasks`) as an ONNX file at ``path``
    through ``torch.onnx.export(..., dynamo=True)``, with the same dynamic batch and sequence
    dims; inputs named as the program's, output ``logits``; the task's name and its label names (in
    the order of the logits, a JSON list) in the model's metadata (``task``, ``labels``). Needs ``onnx`` and
    ``onnxscript`` (``pip install onnx onnxscript``; ``onnxruntime`` runs the file)."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise CTRError(
            f"export_onnx() needs the onnx and onnxscript packages ({err.name} is missing): "
            "pip install onnx onnxscript"
        ) from None
    task_id = model.task_id(task)
    (program,) = export_for_tasks(model, [task_id], max_length).values()
    onnx_program = torch.onnx.export(program, dynamo=True, output_names=["logits"])
    onnx_program.model.metadata_props["task"] = model.task_names[task_id]
    onnx_program.model.metadata_props["labels"] = json.dumps(model.label_names[task_id])
    path = Path(path)
    onnx_program.save(str(path))
    return path
