"""What a continual-learning method is: a model recipe, its options, and hooks into the one loop.

The loop (``ctr_plugin.continual.loop``) owns batching, optimisation, validation, best-epoch
selection and evaluation, identically for every method. A method only says which model it trains
and what happens at a few points:

    before_sequence
    per task: before_task -> [extra_examples -> loss -> backward -> before_step -> optimizer step
                              -> after_step]* -> after_task -> (before_evaluate -> evaluate)*

Every hook is a no-op by default. A method's options are dataclass fields with a default and a
one-line ``help``; ``get_method(name, {"key": "value"})`` sets them from strings (the CLI's
``--method-arg key=value``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ctr_plugin.continual.config import TrainingConfig
from ctr_plugin.continual.services import LoopServices
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.search_space import Distribution
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import check_method_options
from ctr_plugin.plugins import PluginConfig

# The groups of rows of the tables (ctr_plugin/reporting/tables.py), in the order shown (a method may declare
# another group: it follows these), and the group whose methods are compared with every other.
TABLE_GROUPS = ("non-continual", "continual baselines", "CTR")
COMPARED_GROUP = "CTR"


def option(default: Any, help: str) -> Any:
    """A method option: a dataclass field with a default and a one-line help."""
    return field(default=default, metadata={"help": help})


@dataclass
class Step:
    """Where the loop is, and the batch it is on (``inputs``: the model's keyword arguments,
    ``task_ids`` included), for methods whose loss or behaviour depends on them."""

    task: int
    epoch: int
    batch: int
    num_batches: int
    num_epochs: int = 1
    inputs: dict = field(default_factory=dict)


@dataclass
class ContinualMethod:
    name: ClassVar[str]
    scenario: ClassVar[str] = "task-il"  # the task id is known at training and at test time
    plugin_type: ClassVar[str]
    # Multi-task training: the loop learns all tasks at once instead of in sequence (bert_mtl).
    joint_training: ClassVar[bool] = False
    # False where the method keeps state across tasks that a checkpoint does not hold (Fisher
    # information, a replay memory, per-task weights): such a run cannot be resumed mid-sequence.
    resumable: ClassVar[bool] = True
    # Ranges of this method's own options for tuning (``ctr_plugin.experiments.tuning``); the learning rate
    # and epochs are searched for every method alike (``search_space.SHARED_SEARCH_SPACE``).
    search_space: ClassVar[dict[str, Distribution]] = {}
    # How the tables (ctr_plugin/reporting/tables.py) show the method: its group of rows (TABLE_GROUPS), and
    # the ONE method (a separate model per task) its knowledge transfer is measured against.
    table_group: ClassVar[str] = "continual baselines"
    one_reference: ClassVar[str] = "adapter_one"
    # Whether a run may go on from a finished checkpoint (--from-checkpoint) without silently
    # losing such state; None: as ``resumable``.
    continuable: ClassVar[bool | None] = None
    # Plugin options the method decides, which a config or flag must not contradict (see
    # ``ctr_plugin.experiments.settings``): fixed values, and plugin options that one of the method's own
    # options sets ({plugin option: method option}).
    fixed_plugin_options: ClassVar[dict[str, Any]] = {}
    plugin_options_from: ClassVar[dict[str, str]] = {}
    # What the loop offers (its batching, with the run's settings): set by the loop before the
    # first task. The loop imports the methods; the methods never import the loop.
    services: ClassVar[LoopServices | None] = None

    # ---- model ---------------------------------------------------------------------------------
    def build_model(self, encoder, tokenizer, plugin_config: PluginConfig, encoder_name: str | None) -> ContinualModel:
        return ContinualModel(encoder, tokenizer, self.plugin_config(plugin_config), encoder_name)

    def decided_plugin_options(self) -> dict[str, Any]:
        """The plugin options this method sets: ``fixed_plugin_options`` and those its own
        options give (``plugin_options_from``)."""
        return self.fixed_plugin_options | {key: getattr(self, own) for key, own in self.plugin_options_from.items()}

    def plugin_config(self, base: PluginConfig, **changes) -> PluginConfig:
        """``base`` with this method's plugin type, the plugin options it decides, and ``changes``.
        A value in ``base`` other than the default that the method would change is refused:
        two settings for one thing, and a silent choice between them would mislabel the run."""
        decided = self.decided_plugin_options()
        defaults = PluginConfig()
        for key, value in decided.items():
            given = getattr(base, key)
            if given != getattr(defaults, key) and given != value:
                how = f"its option `{self.plugin_options_from[key]}`" if key in self.plugin_options_from else "its design"
                raise CTRError(
                    f"Method {self.name!r} sets the plugin option `{key}` to {value!r} (by {how}), but the plugin "
                    f"configuration asks for {given!r}. Give one value: drop `{key}`"
                    + (f", or set it through --method-arg {self.plugin_options_from[key]}=..." if key in self.plugin_options_from else ", or choose another method")
                    + "."
                )
        return PluginConfig(**{**base.to_dict(), "plugin_type": self.plugin_type, **decided, **changes})

    # ---- hooks (no-ops by default) ---------------------------------------------------------
    def before_sequence(self, model: ContinualModel, tasks: list[TaskData], cfg: TrainingConfig) -> None:
        """Once, before the first task the loop trains."""

    def before_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        pass

    def extra_examples(self, model: ContinualModel, step: Step) -> Split | None:
        """Examples mixed into the current training batch; ``Split.task_ids`` gives their tasks
        (replay). The loop encodes them with the batch, so one forward pass serves both."""
        return None

    def forward_kwargs(self, model: ContinualModel, step: Step) -> dict:
        """Extra keyword arguments of the model's forward pass during training."""
        return {}

    def loss(self, model: ContinualModel, logits: torch.Tensor, labels: torch.Tensor, step: Step) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def before_step(self, model: ContinualModel, step: Step) -> None:
        pass

    def after_step(self, model: ContinualModel, step: Step) -> None:
        pass

    def after_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        pass

    def before_evaluate(self, model: ContinualModel, task: int) -> None:
        """Before task ``task`` is tested (ONE variants load that task's own weights here)."""

    def no_weight_decay(self, model: ContinualModel) -> set[int]:
        """ids of trainable parameters that must not be weight-decayed (beyond biases and norms)."""
        return set()

    def learning_rates(self, model: ContinualModel, lr: float) -> dict[int, float]:
        """Learning rates of trainable parameters (by id) that differ from the loop's ``lr``."""
        return {}

    # ---- options -----------------------------------------------------------------------------
    def options(self) -> dict:
        return asdict(self)

    @classmethod
    def option_help(cls) -> str:
        lines = [f"  {f.name} (default {f.default!r}): {f.metadata.get('help', '')}" for f in fields(cls)]
        return "\n".join(lines) or "  (this method has no options)"

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None) -> ContinualMethod:
        """The method with ``options`` set; string values (from the CLI) are converted to the
        field's type. An unknown option gets an error listing the valid ones."""
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in (options or {}).items():
            if key not in known:
                raise CTRError(f"Method {cls.name!r} has no option {key!r}. Its options:\n{cls.option_help()}")
            values[key] = _convert(value, known[key].type, key, cls.name)
        method = cls(**values)
        check_method_options(method)  # ranges: ctr_plugin/options.py
        return method


def _convert(value: Any, type_name: Any, key: str, method: str) -> Any:
    if not isinstance(value, str):
        return value
    type_name = getattr(type_name, "__name__", type_name)
    try:
        if type_name == "bool":
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        return {"int": int, "float": float}.get(type_name, str)(value)
    except ValueError:
        raise CTRError(f"Option {key}={value!r} of method {method!r} must be a {type_name}.") from None


def shared_parameters(model: ContinualModel) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters every task uses: all but the per-task heads (by name)."""
    heads = {id(p) for p in model.heads.parameters()}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in heads}
