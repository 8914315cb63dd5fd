"""The CTR CL-plugin: knowledge sharing module (task capsules + transfer routing) and a HAT-masked
task-specific module. The whole forward pass is in this file, top to bottom.

Reference: Ke, Liu, Ma, Xu, Shu, "Achieving Forgetting Prevention and Knowledge Transfer in
Continual Learning", NeurIPS 2021 (arXiv 2112.02706). Notation follows the paper:

    o  = KSM(x; t)                       knowledge sharing module        (B, L, d)
    h  = x + o
    h1 = m1_t * relu(W1 h + b1)          task-specific module, HAT masks  (B, L, a)
    h2 = m2_t * relu(W2 h1 + b2)                                          (B, L, d)
                                         (no relu here with tsm_activation "none")
    y  = x + h2

Every example carries its own task id (``context.task_ids``), so one batch may mix tasks, and an
example's output never depends on the other examples of its batch. Tasks are added one at a time;
nothing is sized by the number of tasks in advance.

The training-time rules of HAT (the s schedule, gradient masking, gradient compensation, the
embedding clamp and the mask regulariser) live in ``ctr_plugin/continual/hat.py``, beside the
training loop; this module only computes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Plugin, PluginConfig
from .context import PluginContext


def _uniform(*shape: int, fan_in: int) -> nn.Parameter:
    """A parameter initialised like ``nn.Linear``: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class TaskCapsules(nn.Module):
    """TK-layer: one small 2-layer network per learned task, p_i = TK_i(x), (B, L, c).

    The per-task weights are separate parameters (a task's capsule is added when the task arrives)
    and are stacked at run time so that all tasks are computed in one batched product.
    """

    def __init__(self, hidden_size: int, capsule_hidden: int, capsule_size: int):
        super().__init__()
        self.hidden_size, self.capsule_hidden, self.capsule_size = hidden_size, capsule_hidden, capsule_size
        self.w1, self.b1 = nn.ParameterList(), nn.ParameterList()
        self.w2, self.b2 = nn.ParameterList(), nn.ParameterList()

    def add_task(self) -> None:
        d, k, c = self.hidden_size, self.capsule_hidden, self.capsule_size
        self.w1.append(_uniform(d, k, fan_in=d))
        self.b1.append(_uniform(k, fan_in=d))
        self.w2.append(_uniform(k, c, fan_in=k))
        self.b2.append(_uniform(c, fan_in=k))

    def forward(self, x: torch.Tensor, num_tasks: int) -> torch.Tensor:
        """x (B, L, d) -> p (B, L, T, c) for tasks 0..num_tasks-1."""
        B, L, _ = x.shape
        T, k = num_tasks, self.capsule_hidden
        w1 = torch.stack(tuple(self.w1[:T]), dim=1).reshape(self.hidden_size, T * k)  # (d, T*k)
        b1 = torch.stack(tuple(self.b1[:T])).reshape(T * k)
        hidden = F.relu(x @ w1 + b1).view(B, L, T, k)  # all tasks' first layers in one product
        w2 = torch.stack(tuple(self.w2[:T]))  # (T, k, c)
        b2 = torch.stack(tuple(self.b2[:T]))  # (T, c)
        return torch.einsum("bltk,tkc->bltc", hidden, w2) + b2


class TokenCNN(nn.Module):
    """Kim-style sentence encoder over the tokens: Conv1d per kernel size, ReLU, max over time.

    Padding-invariant: padded positions are zeroed and act exactly like the convolution's own
    zero padding, and only windows that start on a real token enter the max, so a text gives the
    same code alone or padded inside a batch.
    """

    def __init__(self, channels: int, filters: int, kernel_sizes: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, filters, k) for k in kernel_sizes)
        self.out_features = filters * len(kernel_sizes)

    def forward(self, u: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """u (N, L, C), zero at padding; token_mask (N, L) -> code (N, filters * kernels)."""
        u = u.transpose(1, 2)  # (N, C, L)
        keep = token_mask[:, None, :]
        codes = []
        for conv in self.convs:
            k = conv.kernel_size[0]
            feats = F.relu(conv(F.pad(u, (0, k - 1))))  # (N, filters, L): a window per start token
            # ReLU output >= 0, so a zeroed start never wins. max() rather than amax(): its backward
            # scatters to the argmax, where amax's compares every element again (2x the cost here).
            codes.append((feats * keep).max(dim=2).values)
        return torch.cat(codes, dim=1)


class TransferRouting(nn.Module):
    """TR-layer: transfer capsules fed by the task capsules through per-example transfer routes.

        u_{j|i} = W_ij p_i                       pre-route vectors, U_i = [u_{1|i}; ...; u_{N|i}]
        a_t     = CNN_cur(U_t)                   current-task code
        z_i     = CNN_prev(U_i) + P a_t          per learned task i <= t
        s_i     = W_sim z_i                      similarity weights (B, N*c)
        delta_i = GumbelSoftmax_hard(W_dec z_i)  1 = transfer task i's knowledge (B,)
        v_j     = sum_{i<=t} delta_i * s_ij * u_{j|i}
        o       = W_out [v_1; ...; v_N]          N*c -> d
    """

    def __init__(self, config: PluginConfig, hidden_size: int):
        super().__init__()
        c, n = config.capsule_size, config.num_transfer_capsules
        self.capsule_size, self.num_capsules = c, n
        self.routes = nn.ParameterList()  # per task i: W_{i,j} for every transfer capsule j, (N, c, c)
        self.current_code = TokenCNN(n * c, config.routing_filters, config.routing_kernel_sizes)
        self.previous_code = TokenCNN(n * c, config.routing_filters, config.routing_kernel_sizes)
        code = self.current_code.out_features
        self.project_current = nn.Linear(code, code, bias=False)  # P
        self.similarity = nn.Linear(code, n * c)  # W_sim
        self.decision = nn.Linear(code, 2)  # W_dec: logits of (don't transfer, transfer)
        self.output = nn.Linear(n * c, hidden_size)  # W_out

    def add_task(self) -> None:
        c = self.capsule_size
        self.routes.append(_uniform(self.num_capsules, c, c, fan_in=c))

    def forward(self, p: torch.Tensor, task_ids: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """p (B, L, T, c) task capsules; task_ids (B,); token_mask (B, L) -> o (B, L, d)."""
        B, L, T, c = p.shape
        routes = torch.stack(tuple(self.routes[:T]))  # (T, N, c, c)
        u = torch.einsum("bltc,tnkc->bltnk", p, routes).reshape(B, L, T, self.num_capsules * c)
        u = u * token_mask[:, :, None, None]  # (B, L, T, Nc), zero at padding

        current = u[torch.arange(B, device=u.device), :, task_ids]  # U_t per example (B, L, Nc)
        a = self.current_code(current, token_mask)  # (B, F)
        per_task = u.permute(0, 2, 1, 3).reshape(B * T, L, -1)  # every task's U_i in one batch
        z = self.previous_code(per_task, token_mask.repeat_interleave(T, dim=0)).view(B, T, -1)
        z = z + self.project_current(a)[:, None, :]  # (B, T, F)

        weights = self.similarity(z)  # s_i (B, T, Nc)
        logits = self.decision(z)  # (B, T, 2)
        if self.training:  # straight-through Gumbel-softmax: hard 0/1 forward, soft gradient
            route = F.gumbel_softmax(logits, tau=1.0, hard=True)[..., 1]
        else:  # deterministic: the more likely decision
            route = (logits[..., 1] > logits[..., 0]).to(logits.dtype)
        learned = torch.arange(T, device=u.device)[None, :] <= task_ids[:, None]  # only tasks i <= t
        route = route * learned  # (B, T)

        v = torch.einsum("bt,btk,bltk->blk", route, weights, u)  # (B, L, Nc)
        return self.output(v)


class TaskMasks(nn.Module):
    """HAT masks of the task-specific module: m = sigmoid(s * e_t), one embedding per task and layer.

    ``cumulative`` holds m_pre = max over learned tasks of their masks at s_max: the units earlier
    tasks use, whose weights the training loop keeps from changing.
    """

    def __init__(self, sizes: tuple[int, ...], init_mean: float = 0.0, init_std: float = 1.0):
        super().__init__()
        self.sizes = sizes
        self.init_mean, self.init_std = init_mean, init_std
        self.embeddings = nn.ModuleList(nn.ParameterList() for _ in sizes)
        for i, n in enumerate(sizes):
            self.register_buffer(f"cumulative_{i}", torch.zeros(n))

    def add_task(self) -> None:
        for size, per_task in zip(self.sizes, self.embeddings):
            per_task.append(nn.Parameter(torch.randn(size) * self.init_std + self.init_mean))  # HAT: N(0, 1)

    def cumulative(self, i: int) -> torch.Tensor:
        return getattr(self, f"cumulative_{i}")

    def task_masks(self, task: int, s: float) -> list[torch.Tensor]:
        """The masks of one task: [m_1 (a,), m_2 (d,)]."""
        return [torch.sigmoid(s * per_task[task]) for per_task in self.embeddings]

    def forward(self, task_ids: torch.Tensor, s: float) -> list[torch.Tensor]:
        """Per-example masks: [(B, a), (B, d)]."""
        return [torch.sigmoid(s * torch.stack(tuple(per_task))[task_ids]) for per_task in self.embeddings]

    @torch.no_grad()
    def accumulate(self, task: int, s_max: float) -> None:
        """After learning ``task``: m_pre = max(m_pre, m_task at s_max)."""
        for i, mask in enumerate(self.task_masks(task, s_max)):
            self.cumulative(i).copy_(torch.maximum(self.cumulative(i), mask))


class CTRPlugin(Plugin):
    """One CL-plugin: KSM (optional: without it this is the paper's Adapter-BERT + HAT) and TSM."""

    def __init__(self, config: PluginConfig, hidden_size: int, context: PluginContext, knowledge_sharing: bool = True):
        super().__init__(context)
        self.config = config
        self.knowledge_sharing = knowledge_sharing
        if knowledge_sharing:
            self.task_capsules = TaskCapsules(hidden_size, config.task_capsule_hidden, config.capsule_size)
            self.transfer_routing = TransferRouting(config, hidden_size)
        self.fc1 = nn.Linear(hidden_size, config.adapter_size)  # W1: d -> a
        self.fc2 = nn.Linear(config.adapter_size, hidden_size)  # W2: a -> d
        # Small W2 so that y ~= x at the start and the frozen encoder's behaviour is kept.
        nn.init.normal_(self.fc2.weight, std=1e-2)
        nn.init.zeros_(self.fc2.bias)
        self.masks = TaskMasks((config.adapter_size, hidden_size), config.mask_init_mean, config.mask_init_std)
        self.up_activation = nn.ReLU() if config.tsm_activation == "relu" else nn.Identity()

    def add_task(self) -> None:
        if self.knowledge_sharing:
            if self.config.freeze_old_capsules:
                for param in (*self.task_capsules.parameters(), *self.transfer_routing.routes):
                    param.requires_grad_(False)
            self.task_capsules.add_task()
            self.transfer_routing.add_task()
        self.masks.add_task()
        super().add_task()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        task_ids, token_mask = self.context.require()
        h = x
        if self.knowledge_sharing:
            p = self.task_capsules(x, self.context.active_tasks)  # (B, L, T, c)
            h = x + self.transfer_routing(p, task_ids, token_mask)  # h = x + o
        m1, m2 = self.masks(task_ids, self.context.s)
        h1 = m1[:, None, :] * F.relu(self.fc1(h))
        h2 = m2[:, None, :] * self.up_activation(self.fc2(h1))
        return x + h2
