"""The optimizers the loop can train with: PyTorch's AdamW (the default), and :class:`BertAdam`,
the update the CTR reference code trains every method with (``TrainingConfig.optimizer``)."""

from __future__ import annotations

import torch


class BertAdam(torch.optim.Optimizer):
    """Adam as BERT's original optimizer, and the CTR reference code's copy of it, compute it: the
    moment estimates are *not* bias-corrected, and weight decay is added to the update (decoupled
    from the moments), all scaled by the learning rate:

        m <- b1 m + (1 - b1) g
        v <- b2 v + (1 - b2) g^2
        p <- p - lr (m / (sqrt(v) + eps) + weight_decay p)

    Without bias correction the first steps are small (m starts at (1 - b1) g), so a warmup is
    built in. The schedule and the gradient clipping are the loop's (``lr_schedule``, ``clip``),
    not the optimizer's. ``eps`` 1e-6 is BertAdam's.
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
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss
