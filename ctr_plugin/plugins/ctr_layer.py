"""The CTR CL-plugin: knowledge sharing module (task capsules + transfer routing) and a HAT-masked
task-specific module. The whole forward pass is in this file, top to bottom; the routing's
convolution kernel is in ``routing_ops.py``.

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

The transfer routing computes the paper's function at close to its arithmetic's cost, with the
same values and gradients to float rounding (tests/test_routing_equality.py compares it with a slow
per-example implementation of the equations): the route matrices W_ij are folded into the routing
convolutions (``TokenCNN``), the convolution + max over time keeps only each filter's winning
window for its backward (``routing_ops.ConvMaxOverTime``), and every task's capsules and routes sit in one
tensor per kind, grown when a task is added, never stacked per step.

The training-time rules of HAT (the s schedule, gradient masking, gradient compensation, the
embedding clamp and the mask regulariser) live in ``ctr_plugin/continual/hat.py``, beside the
training loop; this module only computes.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ctr_plugin.plugins.context import PluginContext
from ctr_plugin.plugins.kinds import SublayerKind
from ctr_plugin.plugins.plugin import Plugin
from ctr_plugin.plugins.routing_ops import conv_max_over_time

if TYPE_CHECKING:  # hints only: PluginConfig checks its kind against the registry, which names this module
    from ctr_plugin.plugins.config import PluginConfig


def _uniform(*shape: int, fan_in: int) -> torch.Tensor:
    """A tensor initialised like ``nn.Linear``'s weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(*shape).uniform_(-bound, bound)


def _append_task(module: nn.Module, name: str, part: torch.Tensor, axis: int) -> None:
    """Append one task's ``part`` to the per-task tensor ``name`` of ``module``, along ``axis``.

    Every task's part of one kind lives in one tensor, so a forward pass reads all tasks without
    stacking them; the tensor is rebuilt here, when a task arrives (each task gets a fresh
    optimizer, so nothing still holds the old one). Where ``module`` has a buffer
    ``<name>_frozen`` (``freeze_old_capsules``), the earlier tasks' parts move there instead, out
    of the optimizer's reach, and the parameter holds the newest task's part only.
    """
    old = getattr(module, name).detach()
    part = part.to(old)
    if hasattr(module, f"{name}_frozen"):
        setattr(module, f"{name}_frozen", torch.cat((getattr(module, f"{name}_frozen"), old), axis))
        old = old.narrow(axis, 0, 0)
    setattr(module, name, nn.Parameter(torch.cat((old, part), axis)))


def _every_task(module: nn.Module, name: str, axis: int) -> torch.Tensor:
    """The per-task tensor ``name`` over every learned task (frozen parts first, if any)."""
    frozen = getattr(module, f"{name}_frozen", None)
    param = getattr(module, name)
    return param if frozen is None else torch.cat((frozen, param), axis)


def _drop_task(module: nn.Module, name: str, axis: int, start: int, width: int) -> None:
    """Cut the ``width`` entries from ``start`` along ``axis`` (one task's part) out of the per-task
    tensor ``name`` of ``module`` (out of ``<name>_frozen`` where that part sits there)."""

    def cut(t: torch.Tensor, at: int) -> torch.Tensor:
        return torch.cat((t.narrow(axis, 0, at), t.narrow(axis, at + width, t.shape[axis] - at - width)), axis)

    frozen = getattr(module, f"{name}_frozen", None)
    if frozen is not None and start < frozen.shape[axis]:
        setattr(module, f"{name}_frozen", cut(frozen, start))
        return
    param = getattr(module, name)
    start -= 0 if frozen is None else frozen.shape[axis]
    kept = cut(param.detach(), start)
    if frozen is not None and kept.shape[axis] == 0 and frozen.shape[axis] > 0:
        # the newest task left: as after add_task, the parameter holds the (now) newest task's part
        kept = frozen.narrow(axis, frozen.shape[axis] - width, width)
        setattr(module, f"{name}_frozen", frozen.narrow(axis, 0, frozen.shape[axis] - width))
    setattr(module, name, nn.Parameter(kept.clone(), requires_grad=param.requires_grad))


class TaskCapsules(nn.Module):
    """TK-layer: one small 2-layer network per learned task, p_i = TK_i(x), (B, L, c).

    All tasks' weights of one kind sit side by side in one tensor (grown when a task arrives), so
    all tasks are computed in one product and nothing is stacked per step.
    """

    # where the tasks sit in each stored tensor; the biases are 1-D like every bias (never weight-decayed)
    task_axes: ClassVar[dict[str, int]] = {"w1": 1, "b1": 0, "w2": 0, "b2": 0}

    def __init__(self, hidden_size: int, capsule_hidden: int, capsule_size: int, freeze_old: bool = False):
        super().__init__()
        d, k, c = hidden_size, capsule_hidden, capsule_size
        self.hidden_size, self.capsule_hidden, self.capsule_size = d, k, c
        self.w1 = nn.Parameter(torch.empty(d, 0))  # (d, T*k): task i's first layer in columns i*k:(i+1)*k
        self.b1 = nn.Parameter(torch.empty(0))  # (T*k,)
        self.w2 = nn.Parameter(torch.empty(0, k, c))  # (T, k, c)
        self.b2 = nn.Parameter(torch.empty(0))  # (T*c,)
        if freeze_old:
            for name in self.task_axes:
                self.register_buffer(f"{name}_frozen", torch.empty_like(getattr(self, name)))

    def add_task(self) -> None:
        d, k, c = self.hidden_size, self.capsule_hidden, self.capsule_size
        for name, part in (
            ("w1", _uniform(d, k, fan_in=d)),
            ("b1", _uniform(k, fan_in=d)),
            ("w2", _uniform(1, k, c, fan_in=k)),
            ("b2", _uniform(c, fan_in=k)),
        ):
            _append_task(self, name, part, self.task_axes[name])

    def remove_task(self, task: int) -> None:
        k, c = self.capsule_hidden, self.capsule_size
        for name, width in (("w1", k), ("b1", k), ("w2", 1), ("b2", c)):
            _drop_task(self, name, self.task_axes[name], task * width, width)

    def every_task(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(w1 (d, T*k), b1 (T*k,), w2 (T, k, c), b2 (T*c,)) over every learned task."""
        return tuple(_every_task(self, name, axis) for name, axis in self.task_axes.items())  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, num_tasks: int) -> torch.Tensor:
        """x (B, L, d) -> p (B, L, T, c) for tasks 0..num_tasks-1."""
        B, L, _ = x.shape
        T, k, c = num_tasks, self.capsule_hidden, self.capsule_size
        w1, b1, w2, b2 = self.every_task()
        hidden = F.relu(x @ w1[:, : T * k] + b1[: T * k]).view(B, L, T, k)  # all tasks' first layers in one product
        return torch.einsum("bltk,tkc->bltc", hidden, w2[:T]) + b2[: T * c].view(T, c)


class TokenCNN(nn.Module):
    """Kim-style sentence encoder over the tokens: Conv1d per kernel size, ReLU, max over time.

    It reads pre-route vectors U = R p (p: c task-capsule channels, R: N*c x c route matrices) and
    computes CNN(U) as a convolution over p with the composed weights W R: the route matrices are
    folded into the convolution (c input channels instead of N*c), every group with its own R, run
    as batched matrix products (``conv_max_over_time``). Gradients reach W and R through the
    composition.

    Padding-invariant: padded positions of p are zero and act exactly like the convolution's own
    zero padding, and only windows that start on a real token enter the max, so a text gives the
    same code alone or padded inside a batch.
    """

    def __init__(self, channels: int, filters: int, kernel_sizes: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, filters, k) for k in kernel_sizes)
        self.out_features = filters * len(kernel_sizes)

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every kernel size as one convolution: each W zero-padded on the right to the widest kernel
        (a window of K positions is the first K of the widest window, and the zero weights add exact
        zeros), the kernels' filters side by side: (kernels * filters, N*c, widest), and their biases."""
        widest = max(conv.kernel_size[0] for conv in self.convs)
        weights = torch.cat([F.pad(conv.weight, (0, widest - conv.kernel_size[0])) for conv in self.convs])
        return weights, torch.cat([conv.bias for conv in self.convs])

    def forward(self, p: torch.Tensor, routes: torch.Tensor, valid: torch.Tensor, masked: bool) -> torch.Tensor:
        """p (N, G, c, L), zero at padding; routes (G, N*c, c); valid (N or 1, G or 1, L) bool, the
        real tokens; masked: whether some start is padding -> code (N, G, filters * kernels) of
        U_g = routes[g] p[:, g]."""
        weights, bias = self.kernels()
        return conv_max_over_time(p, compose(routes, weights), bias, valid, masked)  # the kernels' codes side by side


def compose(routes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """W R_g of every group g in one product, (G*c, N*c) @ (N*c, filters * widest): routes (G, N*c, c),
    weights (filters, N*c, widest) -> (G, filters, c, widest), a convolution over c channels per group."""
    G, channels, c = routes.shape
    widest = weights.shape[2]
    composed = routes.transpose(1, 2).reshape(G * c, channels) @ weights.transpose(0, 1).reshape(channels, -1)
    return composed.view(G, c, -1, widest).transpose(1, 2)


class TransferRouting(nn.Module):
    """TR-layer: transfer capsules fed by the task capsules through per-example transfer routes.

        u_{j|i} = W_ij p_i                       pre-route vectors, U_i = [u_{1|i}; ...; u_{N|i}]
        a_t     = CNN_cur(U_t)                   current-task code
        z_i     = CNN_prev(U_i) + P a_t          per learned task i <= t
        s_i     = W_sim z_i                      similarity weights (B, N*c)
        delta_i = GumbelSoftmax_hard(W_dec z_i)  1 = transfer task i's knowledge (B,)
        v_j     = sum_{i<=t} delta_i * s_ij * u_{j|i}
        o       = W_out [v_1; ...; v_N]          N*c -> d

    U_i is never formed: with R_i = [W_i1; ...; W_iN] (N*c x c), U_i = R_i p_i is linear in p_i, so
    the CNNs run on p_i with R_i folded into their weights (``TokenCNN``), and
    v = sum_i (delta_i s_i * R_i) p_i folds the per-example scalars into R_i.
    """

    def __init__(self, config: PluginConfig, hidden_size: int):
        super().__init__()
        c, n = config.capsule_size, config.num_transfer_capsules
        self.capsule_size, self.num_capsules = c, n
        self.routes = nn.Parameter(
            torch.empty(0, n, c, c)
        )  # (T, N, c, c): task i's W_{i,j} for every transfer capsule j
        if config.freeze_old_capsules:
            self.register_buffer("routes_frozen", torch.empty(0, n, c, c))
        self.current_code = TokenCNN(n * c, config.routing_filters, config.routing_kernel_sizes)
        self.previous_code = TokenCNN(n * c, config.routing_filters, config.routing_kernel_sizes)
        code = self.current_code.out_features
        self.project_current = nn.Linear(code, code, bias=False)  # P
        self.similarity = nn.Linear(code, n * c)  # W_sim
        self.decision = nn.Linear(code, 2)  # W_dec: logits of (don't transfer, transfer)
        self.output = nn.Linear(n * c, hidden_size)  # W_out

    def add_task(self) -> None:
        c = self.capsule_size
        _append_task(self, "routes", _uniform(1, self.num_capsules, c, c, fan_in=c), 0)

    def remove_task(self, task: int) -> None:
        _drop_task(self, "routes", 0, task, 1)

    def every_route(self) -> torch.Tensor:
        """W_ij of every learned task i, (T, N, c, c)."""
        return _every_task(self, "routes", 0)

    def forward(
        self,
        p: torch.Tensor,
        task_ids: torch.Tensor,
        one_task: bool,
        token_mask: torch.Tensor,
        real: torch.Tensor,
        padded: bool,
    ) -> torch.Tensor:
        """p (B, L, T, c) task capsules; task_ids (B,); one_task: whether every example's task is
        the last of the T (the usual batch); token_mask (B, L); real (B, L) bool, the real tokens;
        padded: whether some token is padding -> o (B, L, d)."""
        B, _, T, c = p.shape
        routes = self.every_route()[:T].reshape(T, self.num_capsules * c, c)  # R_i: p_i -> U_i
        p = p * token_mask[:, :, None, None]  # zero at padding, and so is every u_{j|i} = W_ij p_i
        channels = p.permute(0, 2, 3, 1)  # (B, T, c, L): each task's capsule as convolution channels

        if one_task:  # CNN_cur(R_t p_t) for every example beside CNN_prev(R_i p_i) for every task i, in one
            # convolution of T + 1 groups: the last, task t's capsule again, with CNN_cur's W R_t and bias
            previous, previous_bias = self.previous_code.kernels()
            current, current_bias = self.current_code.kernels()
            filters = previous.shape[0]
            composed = compose(routes, torch.cat((previous, current)))  # both CNNs' W R_i: (T, 2 * filters, c, K)
            weight = torch.cat((composed[:, :filters], composed[T - 1 :, filters:]))  # (T + 1, filters, c, K)
            bias = torch.cat((previous_bias.expand(T, filters), current_bias[None]))
            codes = conv_max_over_time(
                torch.cat((channels, channels[:, T - 1 :]), 1), weight, bias, real[:, None, :], padded
            )
            z, a = codes[:, :T], codes[:, T]  # every task's CNN_prev(U_i) (B, T, F); a_t = CNN_cur(U_t) (B, F)
        else:  # each example its own group for CNN_cur, with its own task's R_t
            current = channels[torch.arange(B, device=p.device), task_ids]  # p_t per example (B, c, L)
            a = self.current_code(current[None], routes[task_ids], real[None], padded)[0]
            z = self.previous_code(channels, routes, real[:, None, :], padded)  # every task's CNN_prev(U_i), (B, T, F)
        z = z + self.project_current(a)[:, None, :]

        weights = self.similarity(z)  # s_i (B, T, Nc)
        logits = self.decision(z)  # (B, T, 2)
        if self.training:  # straight-through Gumbel-softmax: hard 0/1 forward, soft gradient
            route = F.gumbel_softmax(logits, tau=1.0, hard=True)[..., 1]
        else:  # deterministic: the more likely decision
            route = (logits[..., 1] > logits[..., 0]).to(logits.dtype)
        if not one_task:  # only tasks i <= t (in a one-task batch every i < T is)
            route = route * (torch.arange(T, device=p.device)[None, :] <= task_ids[:, None])  # (B, T)

        mix = (route[:, :, None] * weights)[..., None] * routes  # delta_i s_i * R_i, (B, T, Nc, c)
        v = torch.einsum("bltc,btjc->blj", p, mix)  # (B, L, Nc)
        return self.output(v)


def negligible_as_zero(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with the values below eps² of its dtype (float32: 1.4e-14) set to 0 in the forward
    pass, its gradient passed through unchanged (d out / d mask = 1 everywhere).

    At HAT's large temperatures most closed units have masks far below that (s e < -32 at
    float32), and multiplying activations and gradients by them yields subnormal numbers (below
    1.2e-38), on which a CPU computes tens of times slower: at s = 100 they made a HAT-masked
    module's training step ~7x slower than the same module without masks. What such a unit adds is
    below eps² times its activation, far below the rounding of every sum it enters, so the values
    computed are unchanged; the mask's own gradient (HAT's learning signal for its embedding,
    which the gradient compensation scales up) is exact.
    """
    negligible = torch.where(mask < torch.finfo(mask.dtype).eps ** 2, mask, 0.0).detach()
    return mask - negligible


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

    @torch.no_grad()
    def remove_task(self, task: int, s_max: float) -> None:
        """Drop task ``task``'s embeddings; the units only it claimed in m_pre are freed:
        m_pre = min(m_pre, max of the remaining tasks' masks at s_max), so every remaining learned
        task's units stay claimed (its mask is under both) and no unit is newly claimed."""
        for i, per_task in enumerate(self.embeddings):
            kept = [e for t, e in enumerate(per_task) if t != task]
            self.embeddings[i] = nn.ParameterList(kept)
            remaining = (
                torch.sigmoid(s_max * torch.stack(kept)).amax(0) if kept else torch.zeros_like(self.cumulative(i))
            )
            self.cumulative(i).copy_(torch.minimum(self.cumulative(i), remaining))

    def cumulative(self, i: int) -> torch.Tensor:
        return getattr(self, f"cumulative_{i}")

    def task_masks(self, task: int, s: float) -> list[torch.Tensor]:
        """The masks of one task: [m_1 (a,), m_2 (d,)]."""
        return [torch.sigmoid(s * per_task[task]) for per_task in self.embeddings]

    def forward(self, s: torch.Tensor | float, tasks: list[int], which: torch.Tensor | None):
        """The masks [m1, m2] of a batch, computed for its own ``tasks`` only: (a,) and (d,) for a
        batch of one task (``which`` None), else per example, (B, a) and (B, d), ``which`` being
        each example's index into ``tasks``."""
        if which is None:  # the usual batch, one task
            return [negligible_as_zero(torch.sigmoid(s * per_task[tasks[0]])) for per_task in self.embeddings]
        masks = [torch.sigmoid(s * torch.stack([per_task[t] for t in tasks])) for per_task in self.embeddings]
        return [negligible_as_zero(m)[which] for m in masks]

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
            self.task_capsules = TaskCapsules(
                hidden_size, config.task_capsule_hidden, config.capsule_size, config.freeze_old_capsules
            )
            self.transfer_routing = TransferRouting(config, hidden_size)
        self.fc1 = nn.Linear(hidden_size, config.adapter_size)  # W1: d -> a
        self.fc2 = nn.Linear(config.adapter_size, hidden_size)  # W2: a -> d
        # Small W2 so that y ~= x at the start and the frozen encoder's behaviour is kept.
        nn.init.normal_(self.fc2.weight, std=1e-2)
        nn.init.zeros_(self.fc2.bias)
        self.masks = TaskMasks((config.adapter_size, hidden_size), config.mask_init_mean, config.mask_init_std)
        self.up_activation = nn.ReLU() if config.tsm_activation == "relu" else nn.Identity()

    def add_task(self) -> None:
        if self.knowledge_sharing:  # with freeze_old_capsules, the earlier tasks' capsules and routes stop learning
            self.task_capsules.add_task()
            self.transfer_routing.add_task()
        self.masks.add_task()
        super().add_task()

    def task_removal_refused(self, task: int) -> str | None:
        if self.knowledge_sharing and task != self.num_tasks - 1:
            return (
                "CTR's knowledge sharing module is shared across tasks: every later task routes through this "
                "task's capsule (its transfer routing reads the capsules of every task up to its own, and sums "
                "those whose transfer decision is on), so removing it would change the later tasks' predictions. "
                "Only the last-added task can be deleted from a ctr model (no earlier task reads its parts)"
            )
        return None

    def remove_task(self, task: int) -> None:
        if self.knowledge_sharing:
            self.task_capsules.remove_task(task)
            self.transfer_routing.remove_task(task)
        self.masks.remove_task(task, self.config.s_max)
        super().remove_task(task)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.context
        task_ids, token_mask = context.require()
        tasks, which = context.tasks()
        h = x
        if self.knowledge_sharing:
            p = self.task_capsules(x, context.active_tasks)  # (B, L, T, c)
            one_task = which is None and tasks[0] == p.shape[2] - 1  # the batch's one task is the last of p's
            h = x + self.transfer_routing(p, task_ids, one_task, token_mask, *context.real_tokens())  # h = x + o
        m1, m2 = self.masks(context.temperature(), tasks, which)
        r = F.relu(self.fc1(h))
        if which is None:  # one task: W2 (m1 * r) as (W2 m1) r, m1 scaling W2's columns (d x a values,
            # not B x L x a; the same products, summed in another order, and the same gradients)
            h2 = m2 * self.up_activation(F.linear(r, self.fc2.weight * m1, self.fc2.bias))
        else:  # per example
            h2 = m2[:, None, :] * self.up_activation(self.fc2(m1[:, None, :] * r))
        return x + h2


# the kinds "ctr" and "hat_adapter" (named in plugins/registry.py's SHIPPED_KINDS)
CTR_KIND = SublayerKind(
    "ctr",
    "CTR: knowledge sharing (task capsules, transfer routing) + the HAT-masked task-specific module",
    partial(CTRPlugin, knowledge_sharing=True),
    default_method="ctr",
    hat_masked=True,
)
HAT_ADAPTER_KIND = SublayerKind(
    "hat_adapter",
    "CTR's HAT-masked task-specific module alone (Adapter-BERT + HAT)",
    partial(CTRPlugin, knowledge_sharing=False),
    default_method="adapter_hat",
    hat_masked=True,
)
