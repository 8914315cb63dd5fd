"""The routing's convolution + max over time as one custom autograd kernel.

``conv_max_over_time`` computes ``relu(conv1d(x)).masked_fill(~valid, 0).max(-1)`` for many
groups of channels at once (one convolution per group) without keeping the feature map for the
backward pass: it keeps each filter's winning window instead, so the backward costs
O(filters * channels * kernel) per group, not that times the length. ``TokenCNN`` in
``plugins/ctr_layer.py`` calls it; tests/test_routing_equality.py checks its values and gradients
against the plain PyTorch expression.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

# Elements of the routing's feature map computed at once: 640 K (2.5 MB in float32, which with
# two threads leaves each core's share of a chunk in its L2 cache while the max and the
# first-winner search pass over it). One group's map is batch x length x (kernel sizes x filters),
# 307 K at batch 16, length 64 (or 8 x 128) and 3 x 100 filters, so a chunk holds two groups there
# and the examples of a group are split only for large batches. Chosen over 512 K (one group) and
# 1 M (three groups) in an interleaved A/B of one plugin's training step and evaluation at 1, 10
# and 50 tasks (BENCHMARKS.md, change 15); 1 M had been chosen over 256 K and 4 M before.
FEATURE_MAP_CHUNK = 640 * 1024


class ConvMaxOverTime(torch.autograd.Function):
    """code[n, g, f] = max over the valid starts l of relu(conv(x[n, g], weight[g])[f, l] + bias[f]).

    x (N, G, C, L), zero at padding; weight (G, F, C, K): one convolution per group g; bias (F,), or
    (G, F) where the groups' biases differ (two CNNs in one call); valid (N or 1, G or 1, L) bool:
    the starts that may win; masked: False when every start is valid (the mask is then skipped).
    Windows run past the end into zeros, as with right padding by K - 1.

    After the max over time each (n, g, f) passes its gradient to one window, so this keeps the
    winning start of each instead of the feature map (which the forward computes a cache-sized
    chunk at a time, ``_window_maxima``) and the backward reads K positions of x per filter: its
    cost is O(F * C * K) per (n, g), not O(F * C * K * L). The same values and gradients as
    ``relu(conv1d(...)).masked_fill(~valid, 0).max(-1)`` up to float rounding (and which of two
    exactly equal windows gets the gradient).
    """

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor, masked: bool = True
    ) -> torch.Tensor:
        K = weight.shape[3]
        padded = F.pad(x, (0, K - 1))  # (N, G, C, L + K - 1)
        best, where = _window_maxima(padded, weight, bias, valid, masked, keep_index=True)  # (N, G, F) each
        positive = best > 0
        ctx.save_for_backward(padded, weight, where, positive)
        ctx.input_dtypes = (x.dtype, weight.dtype, bias.dtype)
        ctx.bias_per_group = bias.dim() == 2
        return best.clamp_min(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        padded, weight, where, positive = ctx.saved_tensors
        N, G, C, padded_length = padded.shape
        filters, K = weight.shape[1], weight.shape[3]
        L = padded_length - K + 1
        grad = (grad * positive).to(padded.dtype)  # ReLU: nothing flows where the best window is <= 0
        grad_weight = grad_bias = grad_padded = None
        if ctx.needs_input_grad[1]:
            grad_weight = padded.new_empty(G, filters, C, K)
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=0 if ctx.bias_per_group else (0, 1)).to(ctx.input_dtypes[2])
        if ctx.needs_input_grad[0]:
            grad_padded = padded.new_zeros(N, G, C, padded_length)
        # The winning window of (n, g, f) starts at where[n, g, f]: its input (c, k) is position
        # where + k of the padded x, so both gradients gather or scatter at these K * F positions,
        # (N, g, C, K, F) values per group chunk: whole groups, about FEATURE_MAP_CHUNK values at once.
        offsets = torch.arange(K, device=where.device)[:, None]
        groups = max(1, FEATURE_MAP_CHUNK // (N * C * K * filters))
        for g in range(0, G, groups):
            n = min(groups, G - g)
            at = slice(g, g + n)
            grad_g = grad[:, at, None, None, :]  # (N, n, 1, 1, F)
            positions = (where[:, at, None, :] + offsets).reshape(N, n, 1, K * filters).expand(N, n, C, K * filters)
            if grad_weight is not None:
                winners = padded[:, at].gather(3, positions).view(N, n, C, K, filters)
                grad_weight[at] = (grad_g * winners).sum(0).permute(0, 3, 1, 2)  # (n, F, C, K)
            if grad_padded is not None:
                # what the winning window of filter f gets at its input (c, k); those in the right
                # padding are cut off after the scatter
                # (N, n, C, K, F), laid out so (W made (n, C, K, F) first, small): no copy to reshape
                spread = grad_g * weight[at].to(padded.dtype).permute(0, 2, 3, 1).contiguous()
                grad_padded[:, at].scatter_add_(3, positions, spread.reshape(N, n, C, K * filters))
        if grad_weight is not None:
            grad_weight = grad_weight.to(ctx.input_dtypes[1])
        grad_x = None if grad_padded is None else grad_padded[..., :L].to(ctx.input_dtypes[0])
        return grad_x, grad_weight, grad_bias, None, None


def _window_maxima(
    padded: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor, masked: bool, keep_index: bool
):
    """The max over the valid starts of the relu-less feature map, and (``keep_index``) the start
    of a window reaching it: (N, G, F) each (index None without ``keep_index``). ``padded``: x
    right-padded by K - 1 zeros.

    Every group's windows are unfolded once per call, (G, C*K, N, L) (a K-fold copy of x, small
    beside the feature map: C*K inputs against F filters). The convolution then runs as one matrix
    product per group, (F, C*K) @ (C*K, n*L), a chunk of at most FEATURE_MAP_CHUNK feature-map
    elements at a time (groups, or examples of one group), so the max reads the map from cache;
    each chunk's maxima are written in place into (G, F, N) buffers, and the winning starts are
    turned into indices once per call, not once per chunk. Each window has one more input, 1,
    which each filter weighs by its bias. With ``masked``, it gains another, 0 where it starts on a
    real token and the dtype's lowest finite value where it starts on padding, weighted 1 by every
    filter: a real window's value gains an exact +0, a padding one never wins (an example with no
    real token gets a max <= 0, so a code of 0 and no gradient)."""
    N, G, C, padded_length = padded.shape
    filters, K = weight.shape[1], weight.shape[3]
    L = padded_length - K + 1
    inputs = C * K + 1 + int(masked)
    # W of every group, the bias as the weight of an input that is always 1 (a product with no
    # bias term: baddbmm would first write the broadcast bias over the whole feature map), and the
    # padding input's weight 1
    extended = weight.new_empty(G, filters, inputs)
    extended[..., : C * K].view(G, filters, C, K).copy_(weight)
    extended[..., C * K] = bias
    unfolded = padded.new_empty(G, inputs, N, L)  # the window of start l of example n at [g, :, n, l]
    unfolded[:, : C * K].view(G, C, K, N, L).copy_(padded.unfold(3, K, 1).permute(1, 2, 4, 0, 3))
    unfolded[:, C * K] = 1
    if masked:
        extended[..., C * K + 1] = 1
        unfolded[:, C * K + 1] = 0
        unfolded[:, C * K + 1].masked_fill_(~valid.transpose(0, 1), torch.finfo(padded.dtype).min)
    rank = _ranks(L, padded) if keep_index else None
    # torch.export: one chunk, since chunks sized from N and L would pin the program's dynamic dims
    chunks = [(0, G, 0, N)] if torch.compiler.is_exporting() else list(_chunks(N, G, filters * L))
    if len(chunks) == 1:  # the whole map at once: no buffers
        feats = torch.bmm(extended, unfolded.view(G, inputs, N * L)).view(G, filters, N, L)
        best, where = _max_and_first_index(feats, rank) if keep_index else (feats.amax(dim=3), None)
        return best.permute(2, 0, 1), None if where is None else where.permute(2, 0, 1).contiguous()
    best = padded.new_empty(G, filters, N)
    first = padded.new_empty(G, filters, N) if keep_index and rank is not None else None  # L - winning start
    where = padded.new_empty(G, filters, N, dtype=torch.long) if keep_index and rank is None else None
    for g, n, e, m in chunks:
        rows = unfolded[g : g + n, :, e : e + m].reshape(n, inputs, m * L)  # a view when the chunk has every example
        feats = torch.bmm(extended[g : g + n], rows).view(n, filters, m, L)
        at = slice(g, g + n) if m == N else (slice(g, g + n), slice(None), slice(e, e + m))
        if where is not None:  # ranks not exact in this dtype: torch's max with indices
            best[at], where[at] = feats.max(dim=3)
            continue
        value = best[at]
        _amax_into(feats, value)
        if first is not None:  # the first start reaching the max ranks highest (_max_and_first_index)
            _amax_into(feats.eq_(value[..., None]).mul_(rank), first[at])
    if first is not None:
        where = (L - first).long().clamp_(max=L - 1)  # 0 only where nothing equals the max (a NaN)
    return best.permute(2, 0, 1), None if where is None else where.permute(2, 0, 1).contiguous()


def _amax_into(feats: torch.Tensor, out: torch.Tensor) -> None:
    """``out[...] = feats.amax(dim=3)``, written in place where ``out`` is contiguous."""
    if out.is_contiguous():
        torch.amax(feats, dim=3, out=out)
    else:
        out.copy_(feats.amax(dim=3))


def _chunks(N: int, G: int, per_example: int) -> Iterator[tuple[int, int, int, int]]:
    """(first group, groups, first example, examples) of each chunk of at most FEATURE_MAP_CHUNK
    feature-map elements (``per_example`` of them per example and group): examples of one group,
    or whole groups where all the examples fit."""
    examples = max(1, min(N, FEATURE_MAP_CHUNK // per_example))
    groups = max(1, FEATURE_MAP_CHUNK // (per_example * N)) if examples == N else 1
    for g in range(0, G, groups):
        for e in range(0, N, examples):
            yield g, min(groups, G - g), e, min(examples, N - e)


def _ranks(L: int, like: torch.Tensor) -> torch.Tensor | None:
    """L - l at start l (the first maximum ranks highest), or None where the ranks L..1 are not
    exact in the dtype (up to 2 / eps they are)."""
    if not like.is_floating_point() or L * torch.finfo(like.dtype).eps > 2:
        return None
    return torch.arange(L, 0, -1, dtype=like.dtype, device=like.device)


def _max_and_first_index(feats: torch.Tensor, rank: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``feats.max(dim=-1)`` (values and the first index reaching them), overwriting ``feats``.

    In three vectorised passes (max, ==, x rank, then max again) rather than torch's max with
    indices, several times slower on a CPU; ``rank``: ``_ranks`` of the last axis (made here if
    not given), torch's max with indices where the ranks would not be exact."""
    L = feats.shape[-1]
    rank = _ranks(L, feats) if rank is None else rank
    if rank is None:
        return feats.max(dim=-1)
    value = feats.amax(dim=-1, keepdim=True)
    first = feats.eq_(value).mul_(rank).amax(dim=-1)  # 0 only where nothing equals the max (a NaN)
    return value[..., 0], (L - first).long().clamp_(max=L - 1)


def conv_max_over_time(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, valid: torch.Tensor, masked: bool | None = None
) -> torch.Tensor:
    """``ConvMaxOverTime`` where a gradient is needed; without one (inference), the same values
    from the max alone (no winning starts kept). ``masked``: whether some start is not valid
    (found from ``valid`` if not given, one sync)."""
    if masked is None:
        masked = not bool(valid.all())
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return ConvMaxOverTime.apply(x, weight, bias, valid, masked)
    padded = F.pad(x, (0, weight.shape[3] - 1))
    return _window_maxima(padded, weight, bias, valid, masked, keep_index=False)[0].clamp_min(0)
