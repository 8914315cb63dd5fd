"""The one continual-learning loop: every method is trained and measured by this code.

Per task: add the task to the model, a fresh optimizer (AdamW, linear warmup and decay, gradient
clipping), epochs with the validation loss after each and the best epoch's weights kept, then the
test accuracy and macro-F1 of every task learned so far (one row of the accuracy matrix).

What it measures on the way is kept per task (:class:`TaskCurve`: the training loss and the
validation loss and accuracy per epoch) and sent to the accelerator's trackers (TensorBoard, W&B,
MLflow; none unless the run asked for them, see ``ctr_plugin.experiments.tracking``), all at one step count,
the optimizer steps taken since the run began: ``train/loss`` per step, ``<task>/...`` per epoch,
and ``test_accuracy/<task>`` for every learned task after each task (the accuracy matrix row).

It runs on Hugging Face Accelerate: one process, or several under ``accelerate launch`` (data
parallel, see ``parallel.py``), with mixed precision on GPUs where asked for.

This module owns the training: :func:`run_sequence`, :func:`learn_next_task`, :func:`train_task`
and the optimizer set-up (:func:`parameter_groups`). What it records lives in
``ctr_plugin.continual.progress`` (:class:`ContinualResults`, :class:`TaskCurve`); how it measures
(:func:`evaluate`, :func:`score_task`) in ``ctr_plugin.continual.evaluation``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from ctr_plugin.continual.batching import batches, encode_batch
from ctr_plugin.continual.evaluation import evaluate, given_or_own, score_task
from ctr_plugin.continual.methods import ContinualMethod, Step
from ctr_plugin.continual.optim import build_optimizer, clip_per_tensor_
from ctr_plugin.continual.parallel import any_process, average_gradients
from ctr_plugin.continual.progress import ContinualResults, TaskCurve
from ctr_plugin.continual.services import LoopServices
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.reporting.metrics import empty_matrix

log = logging.getLogger(__name__)

__all__ = [
    "learn_next_task",
    "parameter_count",
    "parameter_groups",
    "run_sequence",
    "seed_everything",
    "train_task",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parameter_groups(model: ContinualModel, method: ContinualMethod, lr: float, weight_decay: float) -> list[dict]:
    """The trainable parameters in optimizer groups, one per (learning rate, weight decay) pair.

    Biases, norms and the parameters ``method.no_weight_decay`` names (HAT's) are not decayed;
    the parameters ``method.learning_rates`` names get their own rate (full fine-tuning's
    encoder, HAT's mask embeddings). The loop and ``ContinualTrainer`` both build on this.
    """
    no_decay = method.no_weight_decay(model)
    rates = method.learning_rates(model, lr)
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for _, param in model.trainable_parameters():
        decay = weight_decay if param.ndim >= 2 and id(param) not in no_decay else 0.0
        groups.setdefault((rates.get(id(param), lr), decay), []).append(param)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def _optimizer(model: ContinualModel, method: ContinualMethod, cfg: TrainingConfig, total_steps: int):
    """AdamW (or ``BertAdam``, ``cfg.optimizer``) over ``parameter_groups``, with linear warmup and
    decay (applied twice with ``cfg.lr_schedule == "linear_squared"``). ``ctr-bench`` builds its
    optimizer with the same ``build_optimizer``."""
    optimizer = build_optimizer(parameter_groups(model, method, cfg.lr, cfg.weight_decay), cfg)
    warmup = max(1, int(cfg.warmup_ratio * total_steps))
    power = 2 if cfg.lr_schedule == "linear_squared" else 1

    def schedule(step: int) -> float:  # linear warmup, then linear decay to zero
        if step < warmup:
            return ((step + 1) / warmup) ** power
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup)) ** power

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def clip_gradients(params: list[torch.nn.Parameter], cfg: TrainingConfig, accelerator: Accelerator) -> None:
    """Clip to ``cfg.max_grad_norm`` the norm of all gradients together (``clip == "global"``) or of
    each parameter tensor's gradient on its own (``"per_tensor"``, as BertAdam in the reference
    code does); either way a few ``_foreach`` operations over all tensors (PyTorch's default for
    the global norm on a CPU or a GPU), not a few per tensor."""
    if cfg.clip == "global":
        accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        return
    accelerator.unscale_gradients()
    clip_per_tensor_(params, cfg.max_grad_norm)


def train_task(
    model: ContinualModel,
    method: ContinualMethod,
    data: TaskData,
    task_id: int,
    cfg: TrainingConfig,
    accelerator: Accelerator,
    caption: str = "",
    curve: TaskCurve | None = None,
    first_step: int = 0,
) -> int:
    """Train ``model`` on one task (already added to it); keep the best epoch; return it (1-based;
    0 where the method leaves nothing to train).

    ``curve`` (if given) receives the epoch-by-epoch losses and accuracy; the accelerator's
    trackers get them too, at step ``first_step`` + the steps taken in this task."""
    with model.method_rules(method.name):
        return _train_task(model, method, data, task_id, cfg, accelerator, caption, curve, first_step)


def _train_task(
    model: ContinualModel,
    method: ContinualMethod,
    data: TaskData,
    task_id: int,
    cfg: TrainingConfig,
    accelerator: Accelerator,
    caption: str,
    curve: TaskCurve | None,
    first_step: int,
) -> int:
    curve = curve if curve is not None else TaskCurve(data.name)
    method.before_task(model, task_id, data)
    if not model.trainable_parameters():  # nothing to train (the prototype methods): no epoch, no optimizer
        method.after_task(model, task_id, data)
        return 0
    num_batches = math.ceil(
        len(data.train) / cfg.batch_size
    )  # global batches: every process steps through all of them
    optimizer, scheduler = _optimizer(model, method, cfg, cfg.epochs * num_batches)
    optimizer = accelerator.prepare_optimizer(
        optimizer
    )  # fp16 loss scaling; the model is not wrapped (see parallel.py)
    shuffler = torch.Generator().manual_seed(cfg.seed * 1000 + task_id)  # the same order on every process
    if (
        accelerator.num_processes > 1
    ):  # each process its own dropout and Gumbel noise; the methods' own RNGs stay shared
        torch.manual_seed(torch.initial_seed() + accelerator.process_index)
    params = [p for _, p in model.trainable_parameters()]
    best_loss, best_epoch, best_state = math.inf, 0, None
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(data.train), generator=shuffler).tolist()
        epoch_loss = 0.0
        bar = tqdm(
            list(batches(data.train, cfg.batch_size, order)),
            desc=f"{caption} epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and accelerator.is_local_main_process),
        )
        for b, idx in enumerate(bar):
            position = Step(task_id, epoch, b, num_batches, cfg.epochs)
            batch, task_ids, labels, weight = encode_batch(
                model, data.train, idx, task_id, cfg.max_length, method.extra_examples(model, position), accelerator
            )
            labels = model.scenario.class_labels(task_ids, labels)  # class-space ids under a shared head
            step = dataclasses.replace(position, inputs=batch | {"task_ids": task_ids})
            with (
                accelerator.autocast(),
                model.context.using(**method.plugin_inputs(model, step)),
                model.scenario.outlier_logits(),  # heads with an outlier class train it (outlier_replay.py)
            ):
                logits = model(**batch, task_ids=task_ids).logits
                loss = method.loss(model, logits.float(), labels, step)
            if any_process(not torch.isfinite(loss), accelerator):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} at task {data.name!r}, epoch {epoch + 1}, batch {b + 1}"
                )
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss * weight if accelerator.num_processes > 1 else loss)
            average_gradients(params, accelerator)
            method.before_step(model, step)
            clip_gradients(params, cfg, accelerator)
            optimizer.step()
            scheduler.step()
            method.after_step(model, step)
            curve.steps += 1
            step_loss = loss.item()
            epoch_loss += step_loss
            if accelerator.trackers:  # none configured (--report-to none): nothing to build or send each step
                accelerator.log(
                    {"train/loss": step_loss, "train/lr": scheduler.get_last_lr()[0]}, step=first_step + curve.steps
                )
            bar.set_postfix(loss=f"{step_loss:.3f}")
        curve.train_loss.append(round(epoch_loss / max(1, num_batches), 5))
        if not len(data.validation):  # no validation data (a task given from Python): keep the last epoch
            best_epoch = epoch + 1
            accelerator.log({f"{data.name}/train_loss": curve.train_loss[-1]}, step=first_step + curve.steps)
            continue
        val = evaluate(model, data.validation, task_id, cfg, desc="validation", accelerator=accelerator)
        log.info("%s epoch %d: validation loss %.4f, accuracy %.1f", caption, epoch + 1, val["loss"], val["acc"])
        curve.validation_loss.append(round(val["loss"], 5))
        curve.validation_accuracy.append(round(val["acc"], 2))
        accelerator.log(
            {
                f"{data.name}/train_loss": curve.train_loss[-1],
                f"{data.name}/validation_loss": val["loss"],
                f"{data.name}/validation_accuracy": val["acc"],
            },
            step=first_step + curve.steps,
        )
        if val["loss"] < best_loss:
            best_loss, best_epoch = val["loss"], epoch + 1
            best_state = {id(p): p.detach().clone() for p in params} if epoch + 1 < cfg.epochs else None
    if best_state is not None and best_epoch < cfg.epochs:
        with torch.no_grad():
            for p in params:
                p.copy_(best_state[id(p)])
    accelerator.free_memory()  # drop the accelerator's reference to this task's optimizer
    method.after_task(model, task_id, data)
    return best_epoch


def run_sequence(
    model: ContinualModel,
    method: ContinualMethod,
    tasks: list[TaskData],
    cfg: TrainingConfig,
    results: ContinualResults | None = None,
    on_task_end: Callable[[ContinualModel, ContinualResults], None] | None = None,
    evaluate_test: bool = True,
    accelerator: Accelerator | None = None,
) -> ContinualResults:
    """Learn ``tasks`` in order; after each, test every task learned so far.

    ``results`` from an earlier, interrupted run resume the sequence after its completed tasks
    (the model must be the checkpoint written after them). ``on_task_end`` is called after each
    task with the model and the results so far (the training script saves both there).
    ``evaluate_test=False`` skips the test sets (hyper-parameter selection must not see them).
    ``accelerator`` (``parallel.make_accelerator``) gives the device, mixed precision and processes;
    by default one process on the model's device. With several, ``on_task_end`` runs on the main
    process only, and every process returns the same results.

    A method with ``joint_training`` (multi-task learning, not continual) learns all tasks at once
    instead: one training on the union of the tasks, each example with its own task id; then
    every row i of the matrices holds the joint model's scores on tasks 0..i, so the final
    accuracy is the joint model's, the forward accuracy equals it on the last row's tasks and
    the forgetting rate is 0 by construction.
    """
    names = [t.name for t in tasks]
    if results is None:
        results = ContinualResults(names, empty_matrix(len(tasks)), empty_matrix(len(tasks)))
    if results.completed_tasks and not method.resumable and not results.continuing_checkpoint:
        raise CTRError(
            f"Method {method.name!r} keeps state across tasks that a checkpoint does not hold, so its "
            f"run cannot be resumed after task {results.completed_tasks}: start it again."
        )
    accelerator = given_or_own(accelerator, model)
    method.services = LoopServices(cfg)
    method.before_sequence(model, tasks, cfg)
    results.scenario = model.scenario.name
    if method.joint_training:
        return _learn_jointly(model, method, tasks, cfg, results, on_task_end, evaluate_test, accelerator)
    while results.completed_tasks < len(tasks):
        learn_next_task(model, method, tasks, cfg, results, on_task_end, evaluate_test, accelerator)
    return results


def learn_next_task(
    model: ContinualModel,
    method: ContinualMethod,
    tasks: list[TaskData],
    cfg: TrainingConfig,
    results: ContinualResults,
    on_task_end: Callable[[ContinualModel, ContinualResults], None] | None = None,
    evaluate_test: bool = True,
    accelerator: Accelerator | None = None,
) -> ContinualResults:
    """One step of ``run_sequence``: add task ``tasks[results.completed_tasks]`` to the model,
    train it with the method's rules, then test every task learned so far (row t of the
    matrices). ``ContinualLearner.learn_task`` takes this step one task at a time."""
    accelerator = given_or_own(accelerator, model)
    method.services = LoopServices(cfg)  # this call's settings, also for a method used before with others
    results.scenario = model.scenario.name
    t = results.completed_tasks
    data = tasks[t]
    seed_everything(cfg.seed * 1000 + t)
    params_before = parameter_count(model)
    task_id = model.add_task(
        data.name, data.label_names, pair=data.train.pairs is not None, source=data.source or None
    )
    caption = f"task {t + 1}/{len(tasks)} {data.name}"  # progress bars and logs
    start = time.perf_counter()
    curve = TaskCurve(data.name)
    results.epochs_kept.append(
        train_task(model, method, data, task_id, cfg, accelerator, caption, curve, results.train_steps)
    )
    results.train_seconds += time.perf_counter() - start
    results.params_added.append(parameter_count(model) - params_before)
    results.curves.append(curve.to_dict())
    results.train_steps += curve.steps
    matrices = (results.acc_matrix, results.f1_matrix)
    tested = range(t + 1 if evaluate_test else 0)
    scores = [score_task(model, method, tasks[j], "test", cfg, matrices, j, [t], accelerator) for j in tested]
    if evaluate_test:
        results.record_row(t, scores)  # over the seen tasks together; the task-id accuracy where inferred
    results.completed_tasks = t + 1
    if evaluate_test:
        log.info("after %s: test accuracy %s", data.name, results.acc_matrix[t][: t + 1])
        _log_matrix_row(results, t, accelerator)
    _task_end(model, results, on_task_end, accelerator)
    return results


def parameter_count(model: torch.nn.Module) -> int:
    """All parameters of ``model`` (shared ones once), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def _task_end(model, results, on_task_end, accelerator: Accelerator) -> None:
    if on_task_end is not None and accelerator.is_main_process:
        on_task_end(model, results)
    accelerator.wait_for_everyone()  # no process starts the next task before the checkpoint is written


def _log_matrix_row(results: ContinualResults, row: int, accelerator: Accelerator) -> None:
    """Row ``row`` of the accuracy matrix (every task learned so far) to the trackers."""
    row_scores = enumerate(results.acc_matrix[row][: row + 1])
    scores = {
        f"test_accuracy/{results.tasks[j]}": value for j, value in row_scores if value is not None
    }  # None: no test data
    if not scores:
        return
    accelerator.log(
        scores | {"test_accuracy/mean": sum(scores.values()) / len(scores), "tasks_learned": row + 1},
        step=results.train_steps,
    )


def _union(tasks: list[TaskData], task_ids: list[int], split: str) -> Split:
    """One mixed-task split: the ``split`` of every task, each example tagged with its task id."""
    parts = [getattr(t, split) for t in tasks]
    has_pairs = any(p.pairs for p in parts)
    return Split(
        texts=[x for p in parts for x in p.texts],
        labels=[y for p in parts for y in p.labels],
        pairs=[x for p in parts for x in (p.pairs or [""] * len(p))] if has_pairs else None,
        task_ids=[t for p, t in zip(parts, task_ids) for _ in range(len(p))],
    )


def _learn_jointly(model, method, tasks, cfg, results, on_task_end, evaluate_test, accelerator) -> ContinualResults:
    """Multi-task learning: see ``run_sequence``. The same ``train_task`` trains the union."""
    seed_everything(cfg.seed * 1000)
    ids = []
    for t in tasks:
        params_before = parameter_count(model)
        ids.append(model.add_task(t.name, t.label_names, pair=t.train.pairs is not None, source=t.source or None))
        results.params_added.append(parameter_count(model) - params_before)
    # Each task is tested on its own split (``score_task``): the union has no test split, so a
    # validation-only run (sealed test splits, see ``ctr_plugin.experiments.validation_runs``) never reads one.
    union = TaskData(
        "+".join(t.name for t in tasks),
        [],
        _union(tasks, ids, "train"),
        _union(tasks, ids, "validation"),
        Split([], []),
    )
    # Every example of the union carries its own task id; the method's hooks and the shuffling seed
    # take the id of the task added last, the one the union is trained as.
    trained_as = ids[-1]
    start = time.perf_counter()
    curve = TaskCurve(union.name)
    epoch = train_task(
        model,
        method,
        union,
        trained_as,
        cfg,
        accelerator,
        f"all {len(tasks)} tasks jointly",
        curve,
        results.train_steps,
    )
    results.epochs_kept = [epoch] * len(tasks)
    results.train_seconds += time.perf_counter() - start
    results.curves = [curve.to_dict()]  # one training, of the union
    results.train_steps += curve.steps
    last = len(tasks) - 1
    scores = []
    for j in range(len(tasks) if evaluate_test else 0):  # the joint model's scores stand in every row from j on
        scored = score_task(
            model,
            method,
            tasks[j],
            "test",
            cfg,
            (results.acc_matrix, results.f1_matrix),
            j,
            range(j, last + 1),
            accelerator,
        )
        scores.append(scored)
        results.record_row(j, scores)
    if evaluate_test:
        _log_matrix_row(results, last, accelerator)
    results.completed_tasks = len(tasks)
    _task_end(model, results, on_task_end, accelerator)
    return results
