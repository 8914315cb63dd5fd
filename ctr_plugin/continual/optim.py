"""The optimizers the loop can train with: PyTorch's AdamW (the default), and :class:`BertAdam`,
the update the CTR reference code trains every method with (``TrainingConfig.optimizer``), built
by :func:`build_optimizer` for the loop and ``ctr-bench`` alike; and per-tensor gradient clipping.

Each update is a few operations over every parameter tensor at once, not a few per tensor: CTR
trains ~32 tensors per plugin (386 with a gradient at 10 tasks, MiniLM), the adapter ~6. AdamW
runs PyTorch's fused kernel (one operation per step on a CPU or a GPU; ``foreach`` on a device
without one); BertAdam and the per-tensor clipping run ``torch._foreach_*`` operations, the same
elementwise operations in the same order as one tensor at a time.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from ctr_plugin.continual.training_config import TrainingConfig


def build_optimizer(groups: list[dict], cfg: TrainingConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``groups`` (``loop.parameter_groups``), as the loop trains with it.

    AdamW is fused where this PyTorch has the kernel for the device (a CPU since torch 2.4): the
    same update as ``foreach``, computed in one pass per element, so rounded differently (float64
    trajectories agree to ~1e-15; float32 values differ in their last bits), and ~3× faster on a
    CPU (BENCHMARKS.md, issue 24); ``foreach`` elsewhere."""
    if cfg.optimizer == "bertadam":
        return BertAdam(groups, lr=cfg.lr)
    devices = {p.device.type for group in groups for p in group["params"]}
    kernel = {"fused": True} if devices <= _fused_devices() else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, **kernel)


def _fused_devices() -> set[str]:
    """The device types with PyTorch's fused optimizer kernels (only "cuda" before torch 2.4)."""
    from torch.utils import _foreach_utils

    return set(getattr(_foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"])())


@torch.no_grad()
def clip_per_tensor_(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """Each gradient clipped to norm ``max_norm`` on its own: ``clip_grad_norm_(p, max_norm)`` for
    each ``p``, with the same operations and rounding, over all tensors at once."""
    grads = defaultdict(list)  # (device, dtype) -> gradients: each batch of tensors stacks its norms
    for p in params:
        if p.grad is not None:
            grads[p.grad.device, p.grad.dtype].append(p.grad)
    for same in grads.values():
        norms = torch.stack(torch._foreach_norm(same, 2.0))
        norms = torch.linalg.vector_norm(norms[:, None], 2.0, dim=1)  # as clip_grad_norm_ takes a total norm
        factors = torch.clamp(max_norm / (norms + 1e-6), max=1.0)
        torch._foreach_mul_(same, factors.unbind())


class BertAdam(torch.optim.Optimizer):
    """Adam as BERT's original optimizer, and the CTR reference code's copy of it, compute it: the
    moment estimates are *not* bias-corrected, and weight decay is added to the update (decoupled
    from the moments), all scaled by the learning rate:

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        p <- p - lr (m / (sqrt(v) + eps) + weight_decay p)

    Without bias correction the first steps are small (m starts at (1 - b1) g), so a warmup is
    built in. The schedule and the gradient clipping are the loop's (``lr_schedule``, ``clip``),
    not the optimizer's. ``eps`` 1e-6 is BertAdam's. Each line above is one ``_foreach``
    operation over a group's tensors (the same elementwise operations as tensor by tensor).
    """

    def __init__(
        self,
        params,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if not self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
            grads = [p.grad for p in params]
            m = [self.state[p]["exp_avg"] for p in params]
            v = [self.state[p]["exp_avg_sq"] for p in params]
            b1, b2 = group["betas"]
            torch._foreach_mul_(m, b1)
            torch._foreach_add_(m, grads, alpha=1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            update = torch._foreach_sqrt(v)
            torch._foreach_add_(update, group["eps"])
            update = torch._foreach_div(m, update)
            if group["weight_decay"]:
                torch._foreach_add_(update, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, update, alpha=-group["lr"])
        return loss
