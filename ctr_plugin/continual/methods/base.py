"""What a continual-learning method is: a model recipe, its options, and hooks into the one loop.

The loop (``ctr_plugin.continual.loop``) owns batching, optimisation, validation, best-epoch
selection and evaluation, identically for every method. A method only says which model it trains
and what happens at a few points:

    before_sequence
    per task: before_task -> [extra_examples -> loss -> backward -> before_step -> optimizer step
                              -> after_step]* -> after_task -> (before_evaluate -> evaluate)*

Every hook is a no-op by default.

**Scenarios** (``scenario: task | domain | class``; ``ctr_plugin/continual/scenarios.py``,
``docs/methods.md`` "Scenarios"). In Task-IL every method has one head per task and is given the
task id at test time. In Domain-IL and Class-IL the test batches carry no task id, and a method
declares how it answers without one in ``when_task_unknown``:

* ``"shared_head"`` (the default): the model gets ONE head over the sequence's class space
  (``model.heads[0]``; Class-IL: it grows by a row per new class when a task arrives, old rows
  kept; Domain-IL: one row per shared label). In training the loop still gives each example its
  task id (``Step.inputs["task_ids"]``; replayed examples carry their own), but the ``labels``
  the hooks receive are class-space ids (``model.scenario.class_labels``) and the logits are over
  every class seen so far (``model.scenario.class_names``; the classes of tasks before ``task``
  are ``model.scenario.class_ids[:task]``). A hook that reads ``model.heads[j]`` per task must
  read the shared head's columns instead (see ``lwf.py``).
* ``"infer_task"``: per-task modules and heads, trained exactly as in Task-IL; at test time the
  task is inferred (``modeling/task_inference.py``: Kim et al. 2022, within-task prediction ×
  task-id prediction from the MSP or energy score of every task's modules on the input).

``scenarios`` lists the scenarios a method serves; asked for another, it is refused with
``scenario_refusal`` as the reason. A new method (a gradient-projection method, class prototypes)
declares both; a method with its own test-time rule (nearest class mean) keeps ``"shared_head"``
and overrides its model's head. No hook may read the task id of a test example: the loop runs the
Domain-/Class-IL tests with task ids withheld (``model.scenario.withholding``), where the model
refuses them.

A method's options are dataclass fields declared with
``option(default, help, range)`` (``ctr_plugin.options``): the option carries its type (the
annotation), its range and its help. ``get_method(name, {"key": "value"})`` sets them from strings
(the CLI's ``--method-arg key=value``), each checked against its declaration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ctr_plugin.continual.services import LoopServices
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.types import Split, TaskData
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.options import checked_field, rule_of
from ctr_plugin.plugins import PluginConfig
from ctr_plugin.search_space import Distribution

# The groups of rows of the tables (ctr_plugin/experiments/grid_summary.py), in the order shown (a method may declare
# another group: it follows these), and the group whose methods are compared with every other.
TABLE_GROUPS = ("non-continual", "continual baselines", "CTR")
COMPARED_GROUP = "CTR"


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
    plugin_type: ClassVar[str]
    # Multi-task training: the loop learns all tasks at once instead of in sequence (bert_mtl).
    joint_training: ClassVar[bool] = False
    # False where the method keeps state across tasks that a checkpoint does not hold (Fisher
    # information, a replay memory, per-task weights): such a run cannot be resumed mid-sequence.
    resumable: ClassVar[bool] = True
    # True where a hook reads the task's training examples (``data`` of ``after_task``, or
    # ``extra_examples``): only the loop gives them; ``ContinualTrainer`` cannot serve the method.
    needs_task_data: ClassVar[bool] = False
    # Ranges for tuning (``ctr_plugin.experiments.tuning``) of this method's own options, or of
    # the plugin options its plugin has; the learning rate and epochs are searched for every
    # method alike (``search_space.SHARED_SEARCH_SPACE``).
    search_space: ClassVar[dict[str, Distribution]] = {}
    # False where the method trains nothing by gradient (the loop runs no epoch; ``lr``, ``epochs``
    # and the other optimisation options are moot): tuning then searches only its own options.
    gradient_training: ClassVar[bool] = True
    # How the tables (ctr_plugin/experiments/grid_summary.py) show the method: its group of rows (TABLE_GROUPS), and
    # the ONE method (a separate model per task) its knowledge transfer is measured against.
    table_group: ClassVar[str] = "continual baselines"
    one_reference: ClassVar[str] = "adapter_one"
    # Whether a run may go on from a finished checkpoint (--from-checkpoint) without silently
    # losing such state; None: as ``resumable``.
    continuable: ClassVar[bool | None] = None
    # How the method answers in Domain-IL / Class-IL, where test examples carry no task id (see the
    # module's docstring): "shared_head" or "infer_task"; the scenarios it serves, and why not others.
    when_task_unknown: ClassVar[str] = "shared_head"
    scenarios: ClassVar[tuple[str, ...]] = ("task", "domain", "class")
    scenario_refusal: ClassVar[str] = ""
    # Plugin options the method's design fixes, which a config or flag must not contradict (see
    # ``ctr_plugin.experiments.settings``).
    fixed_plugin_options: ClassVar[dict[str, Any]] = {}
    # What the loop offers (its batching, with the run's settings): set by the loop before the
    # first task.
    services: ClassVar[LoopServices | None] = None

    # Whether the model's per-task heads get an outlier class (Domain-/Class-IL task inference
    # trained with out-of-distribution replay: outlier_replay.py); only that mixin says yes.
    outlier_class: ClassVar[bool] = False

    # ---- model ---------------------------------------------------------------------------------
    def build_model(self, encoder, tokenizer, plugin_config: PluginConfig, encoder_name: str | None) -> ContinualModel:
        return ContinualModel(encoder, tokenizer, self.plugin_config(plugin_config), encoder_name)

    def plugin_config(self, base: PluginConfig, **changes) -> PluginConfig:
        """``base`` with this method's plugin type, the plugin options it fixes, and ``changes``."""
        return PluginConfig(
            **{**base.to_dict(), "plugin_type": self.plugin_type, **self.fixed_plugin_options, **changes}
        )

    # ---- hooks (no-ops by default) ---------------------------------------------------------
    def before_sequence(self, model: ContinualModel, tasks: list[TaskData], cfg: TrainingConfig) -> None:
        """Once, before the first task the loop trains."""

    def before_task(self, model: ContinualModel, task: int, data: TaskData) -> None:
        pass

    def extra_examples(self, model: ContinualModel, step: Step) -> Split | None:
        """Examples mixed into the current training batch; ``Split.task_ids`` gives their tasks
        (replay). The loop encodes them with the batch, so one forward pass serves both."""
        return None

    def plugin_inputs(self, model: ContinualModel, step: Step) -> dict:
        """Values the plugins read in the training step's forward pass (HAT's temperature ``s``),
        set on the model's ``PluginContext`` around it."""
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
        """Before task ``task`` is tested with its task id given (Task-IL only: in Domain-/Class-IL
        no hook is told which task a test split is)."""

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
        lines = [
            f"  {f.name} (default {f.default!r}{'; ' + rule.describe() if (rule := rule_of(f)) else ''}): "
            f"{f.metadata.get('help', '')}"
            for f in fields(cls)
        ]
        return "\n".join(lines) or "  (this method has no options)"

    @classmethod
    def from_options(cls, options: dict[str, Any] | None = None) -> ContinualMethod:
        """The method with ``options`` set, each converted to its field's type (strings from the
        CLI included) and checked against its range. An unknown option gets an error listing the
        valid ones."""
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in (options or {}).items():
            if key not in known:
                raise CTRError(f"Method {cls.name!r} has no option {key!r}. Its options:\n{cls.option_help()}")
            values[key] = checked_field(
                known[key], value, f"Option of method {cls.name!r}", f" (--method-arg {key}=...)"
            )
        return cls(**values)


def shared_parameters(model: ContinualModel) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters every task uses: all but the per-task heads (by name)."""
    heads = {id(p) for p in model.heads.parameters()}
    return {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in heads}
