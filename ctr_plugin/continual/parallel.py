"""Devices, mixed precision and data parallelism for the loop, through Hugging Face Accelerate.

One process (``ctr-train``) or several (``accelerate launch --multi_gpu
--num_processes N -m ctr_plugin.commands.train``) run the same loop. With N processes every global batch
of ``batch_size`` examples is split between them, each computes its share of the loss, and the
gradients are averaged before the optimizer step, so the update equals the one-process update
on the whole batch (up to the order of float sums, and dropout / Gumbel noise, which each process
draws from its own stream). Every process holds an identical copy of the model and applies the
same update; evaluation is split the same way and the predictions gathered, so every process
takes the same best-epoch decision. Only the main process writes files.

Why not ``accelerator.prepare(model)`` (DistributedDataParallel)? The trainable parameters change
with every task (new capsules, heads and masks) and several methods use parameters outside the
model's forward pass (LwF's heads on distilled features, EWC's penalty): DDP's bucketed hooks
assume neither. One flattened all-reduce after the backward pass is exact for all of them, and
the plugins are small enough that overlapping it with the backward pass would gain little.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from accelerate import Accelerator

from ctr_plugin.errors import CTRError

_MIXED_PRECISION = ("no", "fp16", "bf16")


def check_device(device: str | None, mixed_precision: str | None = None) -> None:
    """Refuse a device this machine does not have (or a name that is no device) and an unknown
    mixed-precision mode, in one paragraph."""
    if mixed_precision is not None and mixed_precision not in _MIXED_PRECISION:
        raise CTRError(f"--mixed-precision must be one of {', '.join(_MIXED_PRECISION)}, not {mixed_precision!r}.")
    if device is None or device == "cpu":
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise CTRError(
            f"--device {device!r} is not a device this program uses: give cpu, cuda or cuda:N (N the GPU's index)."
        )
    if not torch.cuda.is_available():
        raise CTRError(f"--device {device} was asked for, but PyTorch sees no CUDA GPU here. Use --device cpu.")
    if index and int(index) >= torch.cuda.device_count():
        raise CTRError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
            f"numbered 0..{torch.cuda.device_count() - 1}."
        )


def make_accelerator(device: str | None = None, mixed_precision: str | None = None, **trackers) -> Accelerator:
    """The run's Accelerator. ``device`` "cpu" forces the CPU (also under ``accelerate launch``,
    which then runs one CPU process per rank); None takes a GPU where there is one.
    ``mixed_precision`` ("no", "fp16", "bf16"; None = what ``accelerate launch`` or
    ``accelerate config`` set) applies on GPUs only: the CPU always trains in float32.
    ``trackers``: ``log_with`` and ``project_dir`` (``tracking.tracker_settings``)."""

    check_device(device, mixed_precision)
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    if device and ":" in device:
        torch.cuda.set_device(torch.device(device))
    if cpu:
        mixed_precision = "no"
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision, **trackers)


def shard(items: Sequence, accelerator: Accelerator) -> tuple[list, float]:
    """This process's share of one global batch, and the weight of its loss.

    Process r takes items r, r + N, r + 2N ... Its mean loss is weighted by
    N * len(share) / len(items), so that the average over processes of the weighted losses (what
    the gradient all-reduce computes) is the mean loss over the whole batch; a batch-independent
    term of the loss (a penalty) keeps its weight too, since the shares' sizes add up to the batch.
    A process whose share is empty (a last batch smaller than N) takes the first item with weight
    0, so that it still joins the collective operations.
    """
    n, rank = accelerator.num_processes, accelerator.process_index
    if n == 1:
        return list(items), 1.0
    mine = list(items[rank::n])
    if not mine:
        return [items[0]], 0.0
    return mine, n * len(mine) / len(items)


def average_gradients(params: Sequence[torch.nn.Parameter], accelerator: Accelerator) -> None:
    """Average the gradients of ``params`` over the processes (nothing to do for one process).

    One all-reduce of all gradients flattened together, plus a flag per parameter: a parameter that
    got a gradient on no process keeps ``grad = None`` (so AdamW leaves it alone, as on one process).
    """
    if accelerator.num_processes == 1 or not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])
    flags = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=flat.device)
    total = accelerator.reduce(torch.cat([flat, flags]), reduction="sum")
    flat, flags = total[: flat.numel()] / accelerator.num_processes, total[flat.numel() :]
    offset = 0
    for p, flag in zip(params, flags.tolist()):
        size = p.numel()
        p.grad = flat[offset : offset + size].view_as(p).to(p.dtype) if flag > 0 else None
        offset += size


def any_process(flag: bool, accelerator: Accelerator) -> bool:
    """True on every process if ``flag`` is true on any (so all stop together, none hangs)."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def gather(items: list, accelerator: Accelerator) -> list:
    """Every process's ``items``, concatenated, on every process."""
    if accelerator.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)
