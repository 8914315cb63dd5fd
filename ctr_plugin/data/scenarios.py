"""The three continual-learning scenarios, and what a task sequence's label sets must be for each.

* ``task`` (Task-IL): the task id is given at training and at test time; each task has its own
  label set (nothing is required of them).
* ``domain`` (Domain-IL): every task has the same label set (e.g. positive / negative on five
  products) and the task id is not given at test time.
* ``class`` (Class-IL): each task brings new classes, and at test time the model chooses among
  all classes seen so far, with no task id.

Classes are identified by their **names** across tasks: the class space of a sequence is the
union of its tasks' label names, in order of first appearance. In Class-IL two tasks that both
name a class ``"other"`` share it (one output of a shared head; for per-task modules the
probabilities the tasks give it add up); a task must bring at least one class not seen before
(otherwise it is Domain-IL for that task). In Domain-IL every task must name the same set of
classes (in any order: label ids are matched by name).
"""

from __future__ import annotations

from collections.abc import Sequence

from ctr_plugin.errors import TaskError
from ctr_plugin.options import SCENARIOS

DEFAULT_SCENARIO = "task"


def check_scenario_name(scenario: object, where: str = "The scenario") -> str:
    """``scenario`` if it is one of :data:`SCENARIOS`; else a TaskError naming them."""
    if scenario not in SCENARIOS:
        raise TaskError(
            f"{where} is {scenario!r}; it must be one of {', '.join(SCENARIOS)} (task-, domain- or class-incremental)."
        )
    return str(scenario)


def label_set_problem(scenario: str, earlier: Sequence[Sequence[str]], name: str, labels: Sequence[str]) -> str | None:
    """Why a task ``name`` with ``labels`` cannot follow tasks with label sets ``earlier`` in
    ``scenario`` (None: it can)."""
    if not earlier or scenario == "task":
        return None
    seen = {str(label) for task in earlier for label in task}
    if scenario == "domain" and {str(label) for label in labels} != {str(label) for label in earlier[0]}:
        return (
            f"Domain-IL needs one label set across tasks, but task {name!r} has labels {list(labels)!r} and the "
            f"first task has {list(earlier[0])!r}. Give every task the same class names (the order may differ), "
            "or run it as --scenario class (new classes per task) or task."
        )
    if scenario == "class" and not {str(label) for label in labels} - seen:
        return (
            f"Class-IL needs each task to bring new classes, but every label of task {name!r} ({list(labels)!r}) "
            "was seen in an earlier task (classes are matched by name, so a repeated name is the same class). "
            "Rename its classes if they differ, or run the sequence as --scenario domain or task."
        )
    return None


def check_label_sets(scenario: str, tasks: Sequence[tuple[str, Sequence[str]]]) -> None:
    """TaskError with the reason if the tasks ``(name, label names)``, in order, cannot serve ``scenario``."""
    check_scenario_name(scenario)
    for i, (name, labels) in enumerate(tasks):
        problem = label_set_problem(scenario, [labels for _, labels in tasks[:i]], name, labels)
        if problem:
            raise TaskError(problem)
