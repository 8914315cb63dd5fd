"""Multiply-adds of a training step and of an inference forward pass, counted part by part.

What ``ctr-bench`` prints beside each measured time ratio: the ratio the arithmetic alone
predicts, so a reader sees how close to that limit each figure is. Counted are the products of
matrices and convolutions (one multiply-add each); elementwise work (activations, HAT masks,
LayerNorms, the optimizer's update) is not, nor are memory traffic and per-operation overhead,
which is what a measured ratio adds on top.

A training step is counted as trained: the frozen encoder's forward and its backward for input
gradients only (from the last layer down to the first plugin), the plugins' forward and full
backward, CTR's routing convolutions with their argmax backward (one window per filter, see
``plugins.routing_ops.ConvMaxOverTime``). Full fine-tuning's backward adds the encoder's weight gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.plugins import PluginConfig

# The plugin kinds (``PluginConfig.plugin_type``) whose arithmetic is counted here.
COUNTED_PLUGINS = ("ctr", "hat_adapter", "adapter", "none")


@dataclass(frozen=True)
class EncoderShape:
    """The sizes of a BERT-like encoder that its cost depends on."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    has_pooler: bool = True

    @classmethod
    def of(cls, encoder) -> EncoderShape:
        config = encoder.config
        return cls(
            config.hidden_size,
            config.num_hidden_layers,
            config.intermediate_size,
            getattr(encoder, "pooler", None) is not None,
        )


@dataclass(frozen=True)
class Counts:
    """Multiply-adds by part, forward and backward, for one batch."""

    forward: dict[str, int]
    backward: dict[str, int]

    @property
    def inference(self) -> int:
        return sum(self.forward.values())

    @property
    def training_step(self) -> int:
        return self.inference + sum(self.backward.values())


def _encoder(
    shape: EncoderShape, batch: int, length: int, plugin: PluginConfig, train_encoder: bool
) -> tuple[int, int]:
    d, inner, tokens = shape.hidden_size, shape.intermediate_size, batch * length
    linears = tokens * (4 * d * d + 2 * d * inner)  # Q, K, V, attention output; FFN in and out
    attention = batch * 2 * length * length * d  # scores Q K^T and the weighted sum of V
    pooler = batch * d * d if shape.has_pooler else 0
    forward = shape.num_layers * (linears + attention) + pooler
    pooler_backward = pooler if plugin.pooling == "pooler" and shape.has_pooler else 0
    if train_encoder:  # weight and input gradients of every linear; both operands of attention
        return forward, shape.num_layers * (2 * linears + 2 * attention) + 2 * pooler_backward
    if plugin.plugin_type == "none":  # nothing below the heads learns
        return forward, 0
    # Input gradients only, from the top down to the first plugin, which sits after layer 0's
    # attention: layer 0 back-propagates through its FFN only.
    backward = (shape.num_layers - 1) * (linears + 2 * attention) + tokens * 2 * d * inner + pooler_backward
    return forward, backward


def _bottleneck(d: int, width: int, tokens: int, input_gradient: bool) -> tuple[int, int]:
    """A d -> width -> d bottleneck (the adapter, or CTR's task-specific module)."""
    forward = tokens * 2 * d * width
    return forward, 2 * forward - (0 if input_gradient else tokens * d * width)


def _task_capsules(d: int, plugin: PluginConfig, tasks: int, tokens: int, input_gradient: bool) -> tuple[int, int]:
    k, c = plugin.task_capsule_hidden, plugin.capsule_size
    forward = tokens * tasks * k * (d + c)  # every task's two layers
    return forward, 2 * forward - (0 if input_gradient else tokens * tasks * k * d)


def _routing(d: int, plugin: PluginConfig, tasks: int, batch: int, length: int) -> tuple[int, int]:
    c, nc, filters = plugin.capsule_size, plugin.num_transfer_capsules * plugin.capsule_size, plugin.routing_filters
    # every kernel zero-padded to the widest and run as one convolution (plugins/ctr_layer.py, TokenCNN):
    # the multiply-adds performed, which the kernels' own widths would undercount by the zeros
    kernels = plugin.routing_kernel_sizes
    widths, code = len(kernels) * max(kernels), plugin.routing_filters * len(kernels)
    tokens = batch * length
    # W R of both CNNs with every task's route, in one product (the current-task CNN's composition
    # is needed for the batch's task only, a batch of one task; the others are a few hundred
    # thousand multiply-adds beside the convolution's hundreds of millions)
    compose = 2 * tasks * filters * nc * c * widths
    convolve = (
        tokens * (tasks + 1) * code * (c * max(kernels) + 1)
    )  # every task's CNN_prev and the batch's CNN_cur, one window per token; a window's inputs:
    # the widest kernel's positions and the constant input its filters weigh by their bias (no
    # padding here: where some token is padding, one more input marks the windows that start on it)
    dense = (
        batch * code * code + batch * tasks * code * (nc + 2) + tokens * tasks * c * nc + tokens * nc * d
    )  # P a; W_sim, W_dec; v; W_out
    argmax_backward = (
        2 * batch * (tasks + 1) * filters * c * widths
    )  # weight and input gradients of the winning windows
    return compose + convolve + dense, 2 * compose + argmax_backward + 2 * dense


def multiply_adds(
    plugin: PluginConfig,
    tasks: int,
    shape: EncoderShape,
    batch: int,
    length: int,
    train_encoder: bool = False,
    labels: int = 2,
) -> Counts:
    """Multiply-adds of one batch of ``batch`` texts of ``length`` tokens, every example on the newest
    of ``tasks`` learned tasks (so CTR routes over all of them), for a model with plugins of kind
    ``plugin.plugin_type`` (one of COUNTED_PLUGINS) and an encoder that trains or not (full
    fine-tuning): what ``ContinualModel.plugin_config`` and ``.train_encoder`` say."""
    kind = plugin.plugin_type
    if kind not in COUNTED_PLUGINS:
        raise ValueError(f"plugin_type {kind!r} is not counted; counted are {', '.join(COUNTED_PLUGINS)}")
    d, tokens, plugins = shape.hidden_size, batch * length, 2 * shape.num_layers
    forward, backward = {}, {}
    forward["encoder"], backward["encoder"] = _encoder(shape, batch, length, plugin, train_encoder)
    forward["heads"] = batch * d * labels
    heads_only = kind == "none" and not train_encoder  # the heads' weight gradients, no input gradient
    backward["heads"] = batch * d * labels * (1 if heads_only else 2)
    if kind != "none":
        name = "adapter" if kind == "adapter" else "task-specific module"
        ksm = kind == "ctr"  # the first plugin's input gradient is needed only where its own parameters feed it
        first, rest = (
            _bottleneck(d, plugin.adapter_size, tokens, ksm),
            _bottleneck(d, plugin.adapter_size, tokens, True),
        )
        forward[name], backward[name] = first[0] + (plugins - 1) * rest[0], first[1] + (plugins - 1) * rest[1]
    if kind == "ctr":
        first, rest = _task_capsules(d, plugin, tasks, tokens, False), _task_capsules(d, plugin, tasks, tokens, True)
        forward["task capsules"], backward["task capsules"] = (
            first[0] + (plugins - 1) * rest[0],
            first[1] + (plugins - 1) * rest[1],
        )
        routing = _routing(d, plugin, tasks, batch, length)
        forward["routing"], backward["routing"] = plugins * routing[0], plugins * routing[1]
    return Counts(forward, backward)
