"""The fast CTR plugin computes the paper's function: compared with a slow, obviously correct one.

``reference_plugin`` below follows the equations of ctr_spec.md one example, one task and one
token window at a time, on each example's real tokens only (no batch, no padding, no folding of
the route matrices into the convolutions, no custom backward). The fast plugin must give the same
outputs (evaluation) and the same gradient for every trainable parameter and for its input
(training, with the Gumbel noise fixed), on padded batches that mix tasks, to float rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ctr_plugin.plugins import CTRPlugin, PluginConfig, PluginContext, routing_ops

HIDDEN = 16
CONFIG = PluginConfig(adapter_size=8, task_capsule_hidden=4, routing_filters=6, routing_kernel_sizes=(3, 4, 5))


def straight_through(logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Hard Gumbel-softmax with given Gumbel noise: one-hot forward, the soft sample's gradient."""
    soft = (logits + noise).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def token_cnn(cnn, u: torch.Tensor) -> torch.Tensor:
    """Kim CNN on one example's real tokens u (n, channels): a window starts on every token and
    runs past the end into zeros; ReLU; max over the windows."""
    codes = []
    for conv in cnn.convs:
        k = conv.kernel_size[0]
        padded = torch.cat((u, u.new_zeros(k - 1, u.shape[1])))
        windows = [padded[start : start + k] for start in range(u.shape[0])]  # (k, channels) each
        feats = torch.stack([torch.einsum("fjw,wj->f", conv.weight, w) + conv.bias for w in windows])  # (n, filters)
        codes.append(F.relu(feats).max(dim=0).values)
    return torch.cat(codes)


def reference_plugin(plugin: CTRPlugin, x, task_ids, lengths, s: float, noise=None) -> torch.Tensor:
    """y = x + m2 * act(W2 (m1 * relu(W1 (x + KSM(x))))) per example, the KSM as in ctr_spec.md §3."""
    caps, routing = plugin.task_capsules, plugin.transfer_routing
    k, c, n_caps = caps.capsule_hidden, caps.capsule_size, routing.num_capsules
    w1, b1, w2, b2 = caps.every_task()
    routes = routing.every_route()  # (T, N, c, c)
    num_tasks = int(task_ids.max()) + 1
    outputs = []
    for b in range(x.shape[0]):
        t, n = int(task_ids[b]), int(lengths[b])
        xb = x[b, :n]
        u = []  # pre-route vectors U_i = [W_i1 p_i; ...; W_iN p_i] of every task i, (n, N*c) each
        for i in range(num_tasks):
            p_i = F.relu(xb @ w1[:, i * k : (i + 1) * k] + b1[i * k : (i + 1) * k]) @ w2[i] + b2[i * c : (i + 1) * c]
            u.append(torch.cat([p_i @ routes[i, j].T for j in range(n_caps)], dim=1))
        a = token_cnn(routing.current_code, u[t])
        v = xb.new_zeros(n, n_caps * c)
        for i in range(num_tasks):
            z = token_cnn(routing.previous_code, u[i]) + routing.project_current(a)
            weights, logits = routing.similarity(z), routing.decision(z)
            if noise is not None:
                delta = straight_through(logits, noise[b, i])[1]
            else:
                delta = (logits[1] > logits[0]).to(x.dtype)
            if i <= t:
                v = v + delta * weights * u[i]
        o = torch.cat((routing.output(v), routing.output.bias.expand(x.shape[1] - n, -1)))  # padding: v = 0
        h = x[b] + o
        m1 = torch.sigmoid(s * plugin.masks.embeddings[0][t])
        m2 = torch.sigmoid(s * plugin.masks.embeddings[1][t])
        h1 = m1 * F.relu(plugin.fc1(h))
        outputs.append(x[b] + m2 * plugin.up_activation(plugin.fc2(h1)))
    return torch.stack(outputs)


def make_plugin(num_tasks: int, freeze_old: bool, dtype: torch.dtype) -> tuple[CTRPlugin, PluginContext]:
    torch.manual_seed(num_tasks)
    context = PluginContext()
    plugin = CTRPlugin(PluginConfig(**{**CONFIG.to_dict(), "freeze_old_capsules": freeze_old}), HIDDEN, context)
    for _ in range(num_tasks):
        plugin.add_task()
    with torch.no_grad():  # away from the initialisation (W2 starts near zero)
        for tensor in (*plugin.parameters(), *plugin.buffers()):
            tensor.add_(torch.randn_like(tensor) * 0.5)
    return plugin.to(dtype), context


def batch(task_ids: list[int], dtype: torch.dtype):
    lengths = torch.tensor([9, 2, 6, 1, 9, 4, 7][: len(task_ids)])
    token_mask = (torch.arange(9)[None, :] < lengths[:, None]).to(
        dtype
    )  # padded on the right, as BERT's tokenizers do
    x = torch.randn(len(task_ids), 9, HIDDEN, dtype=dtype)
    return x, torch.tensor(task_ids), token_mask, lengths


CASES = [  # (learned tasks, the batch's task ids, freeze_old_capsules)
    (1, [0, 0, 0, 0, 0], False),
    (2, [1, 0, 1, 0], False),
    (5, [4, 0, 2, 1, 3, 4, 2], False),
    (5, [2, 0, 1, 2], False),  # tasks 3 and 4 are learned but later than every example's
    (2, [1, 0, 1], True),  # task 0's capsules and routes are frozen
    (5, [4, 1, 3, 0, 2], True),
    (5, [4, 4, 4, 4, 4], False),  # one task, the newest: the training batch (one group for CNN_cur)
    (5, [2, 2, 2, 2], False),  # one task, not the newest
    (3, [2, 2, 2, 2], True),
]


def run_fast(plugin, context, x, task_ids, token_mask, s):
    context.task_ids, context.token_mask, context.active_tasks, context.s = (
        task_ids,
        token_mask,
        int(task_ids.max()) + 1,
        s,
    )
    return plugin(x)


@torch.no_grad()
def balance_routes(plugin, context, x, task_ids, token_mask) -> None:
    """Shift the decision logits so that about half of the batch's routes to learned tasks transfer:
    the comparison then sees both kinds of route."""
    logits = []
    hook = plugin.transfer_routing.decision.register_forward_hook(lambda module, args, out: logits.append(out))
    run_fast(plugin, context, x, task_ids, token_mask, s=400.0)
    hook.remove()
    learned = torch.arange(logits[0].shape[1])[None, :] <= task_ids[:, None]
    margins = (logits[0][..., 1] - logits[0][..., 0])[learned].sort().values
    middle = len(margins) // 2
    threshold = (margins[middle - 1] + margins[middle]) / 2 if len(margins) > 1 else margins[0] - 1.0
    plugin.transfer_routing.decision.bias[1] -= threshold
    if len(margins) > 1:
        assert 0 < int((margins > threshold).sum()) < len(margins)


def assert_close(fast: torch.Tensor, reference: torch.Tensor, what: str) -> None:
    """Within 1e-5 of the reference, relative to the reference's largest magnitude."""
    scale = reference.abs().max().clamp_min(1e-30)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5 * float(scale), msg=lambda m: f"{what}: {m}")


def assert_as_accurate(fast: torch.Tensor, reference: torch.Tensor, exact: torch.Tensor, what: str) -> None:
    """float32: the fast path's error against the float64 computation ``exact`` is at most four
    times the float32 reference's own error, plus 1e-6 of the largest magnitude. (Two float32
    computations of a gradient whose terms cancel can differ by more than 1e-5 of its largest
    value, each as close to the exact value as the other, and by how much depends on the CPU's
    kernels; a wrong gradient is off by its own size.)"""
    scale = float(exact.abs().max().clamp_min(1e-30))
    fast_error = float((fast.double() - exact).abs().max())
    reference_error = float((reference.double() - exact).abs().max())
    assert fast_error <= 4 * reference_error + 1e-6 * scale, (
        f"{what}: error {fast_error:.3g} against float64, the float32 reference's {reference_error:.3g} "
        f"(largest magnitude {scale:.3g})"
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_tasks, task_ids, freeze_old", CASES)
def test_fast_routing_gives_the_reference_outputs_at_evaluation(num_tasks, task_ids, freeze_old, dtype):
    plugin, context = make_plugin(num_tasks, freeze_old, dtype)
    plugin.eval()
    x, ids, token_mask, lengths = batch(task_ids, dtype)
    balance_routes(plugin, context, x, ids, token_mask)
    with torch.no_grad():
        fast = run_fast(plugin, context, x, ids, token_mask, s=400.0)
        reference = reference_plugin(plugin, x, ids, lengths, s=400.0)
    assert_close(fast, reference, "outputs")


# FEATURE_MAP_CHUNK: None, the default (one chunk here); 1, one example of one group at a time;
# 1134 = 7 examples x 9 starts x 18 filters (three kernel sizes of 6), whole groups at a time
@pytest.mark.parametrize("chunk", [None, 1, 1134])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("num_tasks, task_ids, freeze_old", CASES)
def test_fast_routing_gives_the_reference_gradients_in_training(
    num_tasks, task_ids, freeze_old, dtype, chunk, monkeypatch
):
    if chunk is not None:  # the feature maps a piece at a time
        monkeypatch.setattr(routing_ops, "FEATURE_MAP_CHUNK", chunk)
    plugin, context = make_plugin(num_tasks, freeze_old, dtype)
    plugin.train()
    x, ids, token_mask, lengths = batch(task_ids, dtype)
    noise = -torch.empty(len(task_ids), num_tasks, 2, dtype=dtype).exponential_().log()  # Gumbel(0, 1)
    monkeypatch.setattr(
        F, "gumbel_softmax", lambda logits, tau=1.0, hard=True: straight_through(logits, noise[:, : logits.shape[1]])
    )
    trainable = {name: p for name, p in plugin.named_parameters() if p.requires_grad}
    if freeze_old:  # the newest task's capsules and routes learn; the earlier tasks' are buffers
        assert plugin.task_capsules.w2.shape[0] == plugin.transfer_routing.routes.shape[0] == 1
        assert (
            plugin.task_capsules.w2_frozen.shape[0] == plugin.transfer_routing.routes_frozen.shape[0] == num_tasks - 1
        )
    weights = torch.randn(x.shape, dtype=dtype)
    s = 2.5  # HAT's temperature mid-anneal: masks between 0 and 1, gradients reach the embeddings

    def gradients(forward, module=plugin, x=x, weights=weights) -> dict[str, torch.Tensor]:
        module.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        (forward(inputs) * weights).sum().backward()
        params = dict(module.named_parameters())
        grads = {
            name: params[name].grad if params[name].grad is not None else torch.zeros_like(p)
            for name, p in trainable.items()
        }
        return grads | {"input": inputs.grad}

    fast = gradients(lambda inputs: run_fast(plugin, context, inputs, ids, token_mask, s))
    reference = gradients(lambda inputs: reference_plugin(plugin, inputs, ids, lengths, s, noise))
    assert fast.keys() == reference.keys()
    if dtype == torch.float64:
        for name in reference:
            assert_close(fast[name], reference[name], f"gradient of {name}")
    else:  # float32: as accurate as the reference, both against the same computation in float64
        twin = copy.deepcopy(plugin).double()
        exact = gradients(
            lambda inputs: reference_plugin(twin, inputs, ids, lengths, s, noise.double()),
            module=twin,
            x=x.double(),
            weights=weights.double(),
        )
        for name in reference:
            assert_as_accurate(fast[name], reference[name], exact[name], f"gradient of {name}")
    assert all(
        reference[name].abs().sum() > 0
        for name in (
            "task_capsules.w1",
            "transfer_routing.routes",
            "transfer_routing.previous_code.convs.0.weight",
            "input",
        )
    )


@pytest.mark.parametrize("padded", [False, True])
def test_inference_takes_the_max_alone_and_gives_the_training_path_values(padded):
    """Without a gradient the routing keeps no argmax positions (``amax``), and with no padding in
    the batch it skips the mask: both give what the autograd function and a per-group convolution
    give."""
    torch.manual_seed(0)
    N, G, C, L, filters, K = 3, 4, 3, 9, 5, 2
    lengths = torch.tensor([9, 5, 2]) if padded else torch.full((N,), L)
    valid = torch.arange(L)[None, None, :] < lengths[:, None, None]  # (N, 1, L)
    x = torch.randn(N, G, C, L, dtype=torch.float64) * valid[:, :, None, :]  # zero at padding
    weight, bias = torch.randn(G, filters, C, K, dtype=torch.float64), torch.randn(filters, dtype=torch.float64)
    expected = torch.stack(
        [
            F.conv1d(F.pad(x[:, g], (0, K - 1)), weight[g], bias)
            .masked_fill(~valid[:, 0, None, :], float("-inf"))
            .amax(-1)
            .clamp_min(0)
            for g in range(G)
        ],
        dim=1,
    )
    with torch.no_grad():
        inferred = routing_ops.conv_max_over_time(x, weight, bias, valid)
    trained = routing_ops.conv_max_over_time(x.clone().requires_grad_(), weight, bias, valid)
    assert trained.grad_fn is not None and inferred.grad_fn is None
    assert_close(inferred, expected, "inference")
    assert_close(trained.detach(), expected, "training path")


def _code_and_grads(code, upstream, *leaves):
    """The code and the gradients of (code * upstream).sum() for ``leaves``, which are reset."""
    (code * upstream).sum().backward()
    out = [code.detach()] + [leaf.grad.clone() for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    return out


@pytest.mark.parametrize("chunk", [None, 1, 360])  # 360: two whole groups (4 examples x 9 starts x 5 filters each)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_masked_routing_with_an_example_of_no_real_token(dtype, chunk, monkeypatch):
    """The padding mask (an extra input per window, the dtype's lowest value at padding starts)
    gives autograd's values and gradients of a -inf masked convolution + max, also for an example
    whose every start is padding: code 0 and no gradient, in float64 as in float32, with the
    feature map computed whole, two groups at a time, or one group and example at a time."""
    if chunk is not None:
        monkeypatch.setattr(routing_ops, "FEATURE_MAP_CHUNK", chunk)
    torch.manual_seed(1)
    N, G, C, L, filters, K = 4, 3, 3, 9, 5, 3
    lengths = torch.tensor([9, 0, 4, 1])
    valid = torch.arange(L)[None, None, :] < lengths[:, None, None]  # (N, 1, L)
    x = (torch.randn(N, G, C, L, dtype=dtype) * valid[:, :, None, :]).requires_grad_()
    weight = torch.randn(G, filters, C, K, dtype=dtype, requires_grad=True)
    bias = (
        torch.randn(filters, dtype=dtype) + 1.0
    ).requires_grad_()  # mostly positive: padding windows would win if not masked
    upstream = torch.randn(N, G, filters, dtype=dtype)

    fast = _code_and_grads(routing_ops.conv_max_over_time(x, weight, bias, valid), upstream, x, weight, bias)
    expected = _code_and_grads(
        torch.stack(
            [
                F.conv1d(F.pad(x[:, g], (0, K - 1)), weight[g], bias)
                .masked_fill(~valid[:, 0, None, :], float("-inf"))
                .amax(-1)
                .clamp_min(0)
                for g in range(G)
            ],
            dim=1,
        ),
        upstream,
        x,
        weight,
        bias,
    )
    for what, a, b in zip(("code", "x", "weight", "bias"), fast, expected):
        assert_close(a, b, f"{what}")
    assert (fast[0][1] == 0).all() and (fast[1][1] == 0).all()  # the example of no real token
    assert (fast[0][0] > 0).any() and fast[1][2].abs().sum() > 0
    with torch.no_grad():
        assert_close(routing_ops.conv_max_over_time(x, weight, bias, valid), expected[0], "inference")


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_texts_shorter_than_the_kernel_give_autograds_values_and_gradients(length, masked):
    """A batch whose longest text has fewer positions than the kernel (a one-word text through
    the routing's K = 5 filters): every window runs into the right padding, and the backward
    gives autograd's gradients of the plain convolution + max, padded or not."""
    torch.manual_seed(2)
    N, G, C, filters, K = 3, 2, 3, 4, 5
    lengths = torch.tensor([length, max(1, length - 1), length]) if masked else torch.full((N,), length)
    valid = torch.arange(length)[None, None, :] < lengths[:, None, None]  # (N, 1, L)
    x = (torch.randn(N, G, C, length, dtype=torch.float64) * valid[:, :, None, :]).requires_grad_()
    weight = torch.randn(G, filters, C, K, dtype=torch.float64, requires_grad=True)
    bias = (torch.randn(filters, dtype=torch.float64) + 1.0).requires_grad_()
    upstream = torch.randn(N, G, filters, dtype=torch.float64)

    fast = _code_and_grads(routing_ops.conv_max_over_time(x, weight, bias, valid), upstream, x, weight, bias)
    expected = _code_and_grads(
        torch.stack(
            [
                F.conv1d(F.pad(x[:, g], (0, K - 1)), weight[g], bias)
                .masked_fill(~valid[:, 0, None, :], float("-inf"))
                .amax(-1)
                .clamp_min(0)
                for g in range(G)
            ],
            dim=1,
        ),
        upstream,
        x,
        weight,
        bias,
    )
    for what, a, b in zip(("code", "x", "weight", "bias"), fast, expected):
        assert_close(a, b, f"{what}")
    assert fast[1].abs().sum() > 0 and fast[2].abs().sum() > 0  # gradients do flow


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_max_and_first_index_is_torch_max(dtype):
    """The vectorised max with indices gives torch's values and the first index of each maximum."""
    feats = torch.randint(-3, 4, (2, 5, 7, 11)).to(dtype)  # small integers: many ties
    feats[0, 0, 0] = float("-inf")
    value, index = routing_ops._max_and_first_index(feats.clone())
    torch.testing.assert_close(value, feats.amax(-1))
    first = torch.stack([(row == row.max()).nonzero()[0, 0] for row in feats.reshape(-1, 11)]).view(2, 5, 7)
    assert torch.equal(index, first)
