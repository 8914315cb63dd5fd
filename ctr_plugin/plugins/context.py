"""How per-call values reach the plugins without changing the encoder's forward signature."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PluginContext:
    """Values every plugin of one model reads during a forward pass.

    The model fills it in before it calls the encoder and clears it afterwards; the plugins hold a
    reference to the same object. This is how the task id reaches layers deep inside an encoder
    whose ``forward`` knows nothing about tasks.
    """

    task_ids: torch.Tensor | None = None  # (B,) long: the task of each example
    token_mask: torch.Tensor | None = None  # (B, L) float: 1 for real tokens, 0 for padding
    active_tasks: int = 0  # 1 + the largest task id in the batch: later tasks are never touched
    s: float = 1.0  # HAT temperature: annealed in training, s_max at evaluation

    def require(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.task_ids is None or self.token_mask is None:
            raise RuntimeError(
                "A plugin ran outside ContinualModel.forward: call the model, not its encoder, "
                "so that the task ids and the attention mask reach the plugins."
            )
        return self.task_ids, self.token_mask
