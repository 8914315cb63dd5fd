"""Which methods serve which scenario, and the model set up for a method in a scenario.

A method declares how it answers when the task id is not given (``when_task_unknown``:
``"shared_head"`` or ``"infer_task"``) and the scenarios it serves (``scenarios``, with
``scenario_refusal`` the reason for the others): ``continual/methods/base.py``. Here the run's
scenario meets the method: :func:`configure_scenario` refuses a method that cannot serve it and
gives a model without tasks its head layout (``modeling/scenario_heads.py``); a model with tasks
keeps its own, and another scenario asked of it is refused. What each scenario requires of the
tasks' label sets is ``data/scenarios.py``.
"""

from __future__ import annotations

from ctr_plugin.continual.methods import ContinualMethod
from ctr_plugin.data.scenarios import check_scenario_name
from ctr_plugin.errors import CTRError
from ctr_plugin.modeling.model import ContinualModel

ANSWERS = ("shared_head", "infer_task")

__all__ = ["check_method_scenario", "configure_scenario"]


def check_method_scenario(method: ContinualMethod, scenario: str) -> None:
    """CTRError naming the scenario and why, if ``method`` cannot serve ``scenario``."""
    scenario = check_scenario_name(scenario)
    if method.when_task_unknown not in ANSWERS:
        raise CTRError(
            f"Method {method.name!r} declares when_task_unknown={method.when_task_unknown!r}; it must be one of "
            f"{', '.join(ANSWERS)} (see ctr_plugin/continual/methods/base.py)."
        )
    if scenario not in method.scenarios:
        reason = method.scenario_refusal or "it does not declare this scenario among those it serves"
        raise CTRError(
            f"Method {method.name!r} cannot serve the {scenario}-incremental scenario: {reason}. "
            f"It serves: {', '.join(method.scenarios)}."
        )


def configure_scenario(model: ContinualModel, method: ContinualMethod, scenario: str | None) -> None:
    """Set ``model`` up for ``method`` in ``scenario`` (None: the model's own, Task-IL for a new
    one): one shared head or per-task heads, decided by the method."""
    scenario = model.scenario.name if scenario is None else scenario
    check_method_scenario(method, scenario)
    model.scenario.configure(
        model, scenario, shared_head=method.when_task_unknown == "shared_head", outlier_class=method.outlier_class
    )
