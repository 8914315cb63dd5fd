"""Equal-budget hyper-parameter tuning on validation data (Optuna), and the tuned-options file.

Every method gets the same number of trials over the shared ranges (``SHARED_SEARCH_SPACE``:
learning rate and epochs) plus the ranges it declares (``ContinualMethod.search_space``: its own
options, or options of its plugin such as LoRA's ``lora_rank``). A method that trains nothing by
gradient (``gradient_training`` False: ncm, slda) searches only its own ranges, the learning rate
and epochs being moot for it; one with no range at all is deterministic given the data, so it gets
one trial (:func:`trial_budget`), and the tuned file says so (``note``).
A trial is one :func:`ctr_plugin.experiments.validation_runs.validation_run` over the first K tasks of a sequence;
its objective is the mean validation accuracy over those K tasks after the K-th is learned, so
forgetting counts. Test splits are sealed throughout. In Domain-IL and Class-IL (the sequence's
``scenario``) the validation splits are scored as the tests are, without the task id, so each
scenario is tuned on its own, with the same budget, into its own file (the scenario is recorded
there, and :func:`check_tuned_scenario` refuses a file tuned in another scenario).

Trials are stored in an Optuna journal file (plain text, one study per method), so tuning is
resumable: a method's study continues until it holds ``n_trials`` finished trials (a trial that
fails, e.g. on a non-finite loss, counts towards the budget; one interrupted by a kill is marked
failed and does not). The remaining trials are drawn by a TPE sampler seeded with
``seed + finished trials``, so a resumed study is reproducible from the point it stopped.

The chosen options go to a YAML file (``<config stem>.tuned.yaml`` beside the sequence config)
that ``ctr-train --tuned`` and ``ctr-tables --tuned`` read; as in a config, its ``training:``
holds training and plugin options::

    methods:
      ctr:
        training: {lr: 0.0011, epochs: 5}
        method_options: {mask_lambda: 0.62}
        objective: 86.4          # mean validation accuracy, percent
        trials: 8
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ctr_plugin.continual.methods import method_class
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.types import TaskData
from ctr_plugin.errors import CTRError
from ctr_plugin.experiments.grid_scenarios import SCENARIO_NAMES
from ctr_plugin.experiments.validation_runs import EncoderCache, validation_run
from ctr_plugin.plugins import PluginConfig
from ctr_plugin.search_space import SHARED_SEARCH_SPACE, Distribution

log = logging.getLogger(__name__)

TUNED_FORMAT = "ctr_plugin.tuned/1"


def search_space(method: str) -> dict[str, Distribution]:
    """The shared ranges plus the method's own (an unknown method is refused); only its own for a
    method that trains nothing by gradient (``gradient_training`` False), for which they are moot."""
    cls = method_class(method)
    own = cls.search_space
    clash = sorted(set(own) & set(SHARED_SEARCH_SPACE))
    if clash:
        raise CTRError(f"Method {method!r} declares {clash} in its search space, which are shared training options.")
    return (SHARED_SEARCH_SPACE | own) if cls.gradient_training else dict(own)


def trial_budget(method: str, n_trials: int) -> int:
    """The trials ``method`` gets of a budget of ``n_trials``: all of them, or one for a method with
    nothing to search (no gradient training and no options: every trial would be the same run)."""
    return n_trials if search_space(method) else min(1, n_trials)


def budget_note(method: str) -> str | None:
    """What the tuned file and its summary say about a method whose budget differs (None: none)."""
    if method_class(method).gradient_training:
        return None
    if not search_space(method):
        return "nothing to tune (no gradient training, no options): one trial"
    return "no gradient training: only its own options searched (lr, epochs moot)"


def describe_search_space(method: str) -> dict[str, str]:
    return {name: dist.describe() for name, dist in search_space(method).items()}


TRAINING_FIELDS = {f.name for f in fields(TrainingConfig)}
PLUGIN_FIELDS = {f.name for f in fields(PluginConfig)}


def _split_params(params: dict[str, Any]) -> tuple[dict, dict, dict]:
    """(training options, plugin options, method options) of sampled ``params``."""
    training = {k: v for k, v in params.items() if k in TRAINING_FIELDS}
    plugin = {k: v for k, v in params.items() if k in PLUGIN_FIELDS}
    return training, plugin, {k: v for k, v in params.items() if k not in training and k not in plugin}


def require_optuna():
    """The ``optuna`` module, or a CTRError naming the extra that installs it (Optuna is optional)."""
    try:
        import optuna
    except ImportError:
        raise CTRError(
            "Tuning needs Optuna, which is not installed: pip install 'ctr_plugin[tune]' (or pip install optuna). "
            "ctr-tune --summary and --show-space work without it."
        ) from None
    return optuna


def _storage(path: Path):
    optuna = require_optuna()
    from optuna.storages.journal import JournalFileBackend

    check_journal(path)  # before Optuna appends anything to it
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _journal_problem(lines: list[bytes]) -> tuple[int, str] | None:
    """The first record of a journal's ``lines`` that is not a whole Optuna record: (its line
    number, from 1; what is wrong), or None when every line is one."""
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n"):
            return number, "it is cut off (no line end)"
        try:
            record = json.loads(line)
        except ValueError:
            return number, "it is not a JSON record"
        if not isinstance(record, dict) or "op_code" not in record:
            return number, "it is JSON but not an Optuna journal record (no op_code)"
    return None


def check_journal(path: str | Path) -> None:
    """Refuse a tuning journal Optuna would damage further or cannot read, before anything is appended.

    A journal is one JSON record per line. A last record cut off by a kill (no line end) was never
    read by Optuna; it is dropped (kept beside the journal in ``<journal>.cut-off``) with a
    warning, because Optuna would otherwise append the next record onto the broken line and make
    the whole journal unreadable. Anything else that is not a journal record, a file that is not a
    journal at all and a path that is not a file are errors naming the path (and the line).
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_file():
        raise CTRError(f"--storage {path} is not a file: name an Optuna journal file (it is created if missing).")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CTRError(f"Cannot read the tuning journal {path} ({err.strerror or err}).") from None
    lines = [line + b"\n" for line in data.split(b"\n")]  # records end in "\n" only (JSON escapes the rest)
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    problem = _journal_problem(lines)
    if problem is None:
        return
    number, what = problem
    head = b'{"op_code":'  # how Optuna begins every record
    last = lines[-1]
    cut_off_record = number == len(lines) and "cut off" in what and (last.startswith(head) or head.startswith(last))
    if cut_off_record:
        _drop_cut_off_record(path, len(data) - len(lines[-1]))
        return
    if number == 1:
        raise CTRError(
            f"--storage {path} is not an Optuna journal written by ctr-tune (line 1: {what}). Name another file "
            "(a new one is created), or move this one away."
        )
    raise CTRError(
        f"The tuning journal {path} is damaged at line {number} of {len(lines)}: {what}. Optuna cannot read past "
        f"it, and ctr-tune appends nothing to a damaged journal. To keep the trials before it, cut the journal "
        f"before that line (head -n {number - 1} {path} > fixed.journal, then pass --storage fixed.journal); "
        "or name a new --storage file to tune from scratch."
    )


def _drop_cut_off_record(path: Path, keep: int) -> None:
    """Cut the journal at byte ``keep`` (after its last whole record) under Optuna's own lock;
    the cut-off bytes go to ``<journal>.cut-off``."""
    from optuna.storages.journal import JournalFileSymlinkLock
    from optuna.storages.journal._file import get_lock_file

    with get_lock_file(JournalFileSymlinkLock(str(path))):
        data = path.read_bytes()
        if len(data) <= keep or data[:keep].count(b"\n") != data.count(b"\n"):
            return  # another process finished or extended the journal meanwhile: nothing to drop
        kept = path.with_name(path.name + ".cut-off")
        kept.write_bytes(data[keep:])
        os.truncate(path, keep)
    log.warning(
        "The tuning journal %s ended in a record cut off by an interruption (%d bytes, line %d, never read by "
        "Optuna); it was dropped (kept in %s) so that new records start on a line of their own.",
        path,
        len(data) - keep,
        data[:keep].count(b"\n") + 1,
        kept,
    )


def tune_method(
    method: str,
    tasks: list[TaskData],
    n_trials: int,
    storage_path: str | Path,
    training: TrainingConfig | None = None,
    plugin: PluginConfig | None = None,
    encoders: EncoderCache | None = None,
    seed: int = 0,
    study_prefix: str = "",
    on_trial: Callable[[dict], None] | None = None,
    scenario: str = "task",
):
    """Run (or continue) ``method``'s study until it holds ``n_trials`` finished trials (one for a
    method with nothing to search: :func:`trial_budget`).

    Each trial trains over ``tasks`` (all of them: pass the first K) with ``training`` and
    ``plugin`` as the base, the sampled values on top, in ``scenario`` (task, domain or class: the
    validation splits are then scored without the task id). Returns the Optuna study.
    """
    optuna = require_optuna()
    from optuna.trial import TrialState

    space = search_space(method)
    training = training or TrainingConfig()
    plugin = plugin or PluginConfig()
    encoders = encoders or EncoderCache()
    storage = _storage(Path(storage_path))
    name = f"{study_prefix}{method}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)  # killed mid-trial: not counted
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    finished = [
        t
        for t in study.get_trials(deepcopy=False)
        if not t.user_attrs.get("interrupted") and t.state in (TrialState.COMPLETE, TrialState.FAIL)
    ]
    n_trials = trial_budget(method, n_trials)
    remaining = n_trials - len(finished)
    if remaining <= 0:
        return study
    study.sampler = optuna.samplers.TPESampler(
        seed=seed + len(finished), n_startup_trials=max(1, min(4, n_trials // 2))
    )

    def objective(trial) -> float:
        params = {k: dist.suggest(trial, k) for k, dist in space.items()}
        train_values, plugin_values, options = _split_params(params)
        cfg = TrainingConfig(**(training.to_dict() | train_values | {"progress": False}))
        plugin_cfg = PluginConfig(**(plugin.to_dict() | plugin_values))
        row = validation_run(tasks, method, options, cfg, plugin_cfg, encoders, scenario=scenario)
        trial.set_user_attr("val_final_mf1", row["val_final_mf1"])
        trial.set_user_attr("val_acc_matrix", row["val_acc_matrix"])
        trial.set_user_attr("seconds", row["seconds"])
        if on_trial is not None:
            on_trial(
                {"method": method, "trial": trial.number, "params": params}
                | {k: row[k] for k in ("val_final_acc", "val_final_mf1", "seconds")}
            )
        return row["val_final_acc"]

    study.optimize(objective, n_trials=remaining, catch=(FloatingPointError,))
    return study


def best_entry(study, method: str) -> dict:
    """What the tuned-options file records for one method's study."""
    from optuna.trial import TrialState

    counted = [
        t
        for t in study.get_trials(deepcopy=False)
        if not t.user_attrs.get("interrupted") and t.state in (TrialState.COMPLETE, TrialState.FAIL)
    ]
    complete = [t for t in counted if t.state == TrialState.COMPLETE]
    if not complete:
        raise CTRError(f"No trial of {method!r} finished: nothing to choose from (see the log for the failures).")
    best = max(complete, key=lambda t: (t.value, -t.number))
    training, plugin, options = _split_params(best.params)
    note = budget_note(method)
    return ({"note": note} if note else {}) | {
        "training": training | plugin,
        "method_options": options,
        "objective": round(best.value, 2),
        "objective_mf1": best.user_attrs.get("val_final_mf1"),
        "best_trial": best.number,
        "trials": len(counted),
        "failed_trials": len(counted) - len(complete),
        "search_space": describe_search_space(method),
    }


def check_tuned_output(path: str | Path, scenario: str) -> None:
    """Refuse to add options tuned in ``scenario`` to the tuned file at ``path`` (if there is one)
    when it holds another scenario's: the file would mix them under one label."""
    path = Path(path)
    held = read_tuned(path).get("scenario", "task") if path.is_file() else scenario
    if held != scenario:
        raise CTRError(
            f"{path} holds options tuned in {SCENARIO_NAMES[held]}; this tuning is {SCENARIO_NAMES[scenario]}. "
            "Each scenario is tuned into its own file: name another --output (the default is <config stem>.tuned.yaml "
            "beside the config)."
        )


def write_tuned(path: str | Path, entries: dict[str, dict], meta: dict) -> None:
    """Write (or update) the tuned-options file: ``entries`` replace those methods' entries."""
    path = Path(path)
    check_tuned_output(path, meta.get("scenario", "task"))
    data = read_tuned(path) if path.is_file() else {"format": TUNED_FORMAT, "methods": {}}
    data |= meta | {"format": TUNED_FORMAT, "updated": datetime.date.today().isoformat()}
    data["methods"] = data.get("methods", {}) | entries
    header = (
        "# Options chosen by ctr-tune on VALIDATION data only (test splits sealed); see\n"
        "# ctr_plugin/experiments/tuning.py. Read by ctr-train --tuned and ctr-tables --tuned.\n"
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120))
    tmp.replace(path)


def read_tuned(path: str | Path) -> dict:
    """The tuned-options file at ``path``, or shipped under that name (``hl5_products``)."""
    from ctr_plugin.data.config import resolve_config

    if not Path(path).expanduser().is_file() and "/" not in str(path):
        path = resolve_config(path, kind="tuned")
    path = Path(path).expanduser()
    if not path.is_file():
        raise CTRError(f"The tuned-options file {path} does not exist. Make it with ctr-tune, or drop --tuned.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CTRError(f"{path} is not valid YAML ({err}); make it again with ctr-tune.") from None
    if not isinstance(data, dict) or data.get("format") != TUNED_FORMAT or not isinstance(data.get("methods"), dict):
        raise CTRError(f"{path} is not a tuned-options file written by ctr-tune (format {TUNED_FORMAT}).")
    return data


def check_tuned_scenario(path: str | Path | None, scenario: str) -> None:
    """Refuse the tuned-options file at ``path`` (None: no file, nothing to check) for runs in
    ``scenario`` when its options were tuned in another (a file without ``scenario:``, written
    before the scenarios, is Task-IL's): a method's best options without the task id need not be
    its best with it, and every scenario is tuned on its own with the same budget."""
    if path is None:
        return
    data = read_tuned(path)
    tuned = data.get("scenario", "task")
    if tuned != scenario:
        raise CTRError(
            f"The tuned options in {path} were chosen in {SCENARIO_NAMES[tuned]} (sequence "
            f"{data.get('sequence', '?')}), but these runs are {SCENARIO_NAMES[scenario]}. Each scenario is tuned on "
            "its own with the same budget: run ctr-tune --config on this sequence's config (it writes "
            "<config stem>.tuned.yaml beside it) and pass that file, or drop --tuned."
        )


def tuned_options(path: str | Path, method: str) -> tuple[dict, dict]:
    """(training and plugin options, method options) the file holds for ``method``; an error if it has none."""
    data = read_tuned(path)
    entry = data["methods"].get(method)
    if entry is None:
        raise CTRError(
            f"{path} holds no tuned options for method {method!r} (it has: {', '.join(data['methods']) or 'none'}). "
            f"Tune it with ctr-tune --methods {method}, or drop --tuned."
        )
    return dict(entry.get("training") or {}), dict(entry.get("method_options") or {})


def summarize_tuned(data: dict) -> str:
    """A markdown table of a tuned-options file (``read_tuned``): per method, best first, the
    validation objective of the chosen trial, its options, and which chosen values lie at an edge
    of their search range (a sign the range may be too narrow for that method)."""
    rows = []
    for method, entry in sorted(data["methods"].items(), key=lambda item: -item[1]["objective"]):
        chosen = dict(entry.get("training") or {}) | dict(entry.get("method_options") or {})
        space = search_space(method) if method in _known_methods() else {}
        edges = [f"{key} {side}" for key, value in chosen.items() if key in space and (side := space[key].edge(value))]
        options = ", ".join(f"{key} {_short(value)}" for key, value in chosen.items())
        mf1 = entry.get("objective_mf1")
        trials = f"{entry['trials']}" + (f" ({entry['failed_trials']} failed)" if entry.get("failed_trials") else "")
        trials += f" ({entry['note']})" if entry.get("note") else ""
        rows.append(
            f"| {method} | {entry['objective']:.2f} | {'-' if mf1 is None else f'{mf1:.2f}'} | "
            f"{options} | {trials} | {', '.join(edges) or '-'} |"
        )
    scenario = f" {SCENARIO_NAMES[data['scenario']]}:" if data.get("scenario", "task") != "task" else ""
    head = [
        f"Objective:{scenario} {data.get('objective', 'validation accuracy')} (one seed; the best of each method's "
        "trials).",
        "",
        "| method | val. acc | val. macro-F1 | chosen options | trials | at a range edge |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def _known_methods() -> set[str]:
    from ctr_plugin.continual.methods import METHODS

    return set(METHODS)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


__all__ = [
    "best_entry",
    "budget_note",
    "check_journal",
    "check_tuned_output",
    "check_tuned_scenario",
    "describe_search_space",
    "read_tuned",
    "summarize_tuned",
    "search_space",
    "trial_budget",
    "tune_method",
    "tuned_options",
    "write_tuned",
]
