"""ctr-tune: tune every method with the same budget of trials, on VALIDATION data only (Optuna, TPE).

    ctr-tune --config hl5_products --trials 8 --tasks 3
    ctr-tune --methods ctr adapter_one --trials 8        # some methods; others keep their entries

A trial trains a method over the first K tasks of the sequence (test splits sealed) and scores the
mean validation accuracy over those K tasks after the K-th. Every method searches the learning
rate and the epochs over the same ranges plus its own options' ranges (``--show-space`` prints
them; ``--summary`` prints the tuned file as a table). Trials are journaled (``--storage``), so
an interrupted call continues where it stopped.
The chosen options go to ``<config stem>.tuned.yaml`` beside the config (in the current
directory for a config shipped inside an installed package), which ``ctr-train --tuned`` and
``ctr-tables --tuned`` read.

A config's ``scenario:`` (task, domain or class) is the tuning's: in Domain-/Class-IL the
validation splits are scored without the task id, as the runs' tests are. Each scenario is tuned
on its own, with the same budget, into its own file (a ``base:`` config such as
hl5_products_domain gets ``hl5_products_domain.tuned.yaml``, never its base's). Methods that train
nothing by gradient (ncm, slda) search only their own options; one with none gets one trial.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ctr_plugin.commands.runner import command_parser, run_main, setup_logging, whole_number
from ctr_plugin.data.config import DEFAULT_SEQUENCE, is_package_data, resolve_config
from ctr_plugin.options import MAX_SEED


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser(__doc__)
    p.add_argument(
        "--config",
        default=DEFAULT_SEQUENCE,
        help=f"YAML task sequence: a path, or the name of a shipped one (default: {DEFAULT_SEQUENCE})",
    )
    p.add_argument("--data-root", help="directory relative file paths in --config resolve against")
    p.add_argument("--methods", nargs="+", help="methods to tune (default: all)")
    p.add_argument(
        "--trials",
        type=whole_number(1),
        default=8,
        help="trials per method: the budget, the same for every method (default 8)",
    )
    p.add_argument(
        "--tasks",
        type=whole_number(1),
        default=3,
        help="K: train on the first K tasks, score after the K-th (default 3)",
    )
    p.add_argument(
        "--max-train-per-task",
        type=int,
        default=200,
        help="cap on training examples per task (default 200)",
    )
    p.add_argument(
        "--seed",
        type=whole_number(0, MAX_SEED),
        help="data split, initialisation and sampler seed (default: the config's `seed:`, else 0)",
    )
    p.add_argument("--encoder", help="hub name or local model directory (default: the config's)")
    p.add_argument("--storage", help="Optuna journal file (default: <config stem>.tuning.journal beside the config)")
    p.add_argument("--output", help="tuned-options file (default: <config stem>.tuned.yaml beside the config)")
    p.add_argument("--show-space", action="store_true", help="print every method's search space and exit")
    p.add_argument(
        "--summary",
        action="store_true",
        help="print the tuned-options file (--output) as a markdown table, best first, and exit",
    )
    return p.parse_args(argv)


def default_paths(config: Path) -> tuple[Path, Path]:
    """(journal, tuned-options file) of a sequence config's tuning: ``<config stem>.tuning.journal``
    and ``<config stem>.tuned.yaml`` beside the config (its own stem: a ``base:`` config never
    shares its base's), or in the current directory for a config inside an installed package."""
    beside = Path.cwd() if is_package_data(config) else config.parent
    return beside / f"{config.stem}.tuning.journal", beside / f"{config.stem}.tuned.yaml"


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from ctr_plugin.continual.methods import METHODS, get_method
    from ctr_plugin.continual.scenarios import check_method_scenario
    from ctr_plugin.data import load_sequence_config, load_tasks
    from ctr_plugin.data.scenarios import check_label_sets
    from ctr_plugin.errors import CTRError
    from ctr_plugin.experiments.grid_scenarios import SCENARIO_NAMES
    from ctr_plugin.experiments.settings import base_options, select_tasks
    from ctr_plugin.experiments.tuning import (
        best_entry,
        check_journal,
        check_tuned_output,
        describe_search_space,
        read_tuned,
        require_optuna,
        summarize_tuned,
        tune_method,
        write_tuned,
    )
    from ctr_plugin.experiments.validation_runs import EncoderCache

    methods = args.methods or list(METHODS)
    for method in methods:
        if method not in METHODS:
            raise CTRError(f"Unknown method {method!r}. Available methods: {', '.join(METHODS)}.")
    if args.show_space:
        for method in methods:
            print(f"{method}: {json.dumps(describe_search_space(method))}")
        return 0
    config = resolve_config(args.config)
    sequence = load_sequence_config(config, data_root=args.data_root)
    if args.tasks > len(sequence.tasks):
        raise CTRError(f"--tasks {args.tasks}: {config} has only {len(sequence.tasks)} tasks.")
    sequence = select_tasks(
        dataclasses.replace(sequence, tasks=sequence.tasks[: args.tasks]), max_train=args.max_train_per_task
    )
    default_storage, default_output = default_paths(config)
    storage = Path(args.storage) if args.storage else default_storage
    output = Path(args.output) if args.output else default_output
    if args.summary:
        # the file this command writes; else (an installed package, nothing tuned here yet) the shipped one
        print(summarize_tuned(read_tuned(output if output.is_file() or args.output else config.stem)))
        return 0
    require_optuna()
    scenario = sequence.scenario
    for method in methods:  # a method that cannot serve the scenario is refused before anything trains
        check_method_scenario(get_method(method), scenario)
    check_tuned_output(output, scenario)  # a file of another scenario's options is not added to
    check_journal(storage)  # a journal Optuna cannot read, or would damage further: before any data loads
    training, plugin = base_options(
        sequence.training, f"the config {config}", {"seed": args.seed} if args.seed is not None else {}, progress=False
    )
    seed = training.seed
    tasks = load_tasks(sequence, seed=seed)
    check_label_sets(scenario, [(t.name, t.label_names) for t in tasks])
    encoders = EncoderCache(args.encoder or sequence.encoder)
    meta = {
        "sequence": sequence.name,
        "config": config.name,
        "scenario": scenario,
        "objective": f"mean validation accuracy over the first {args.tasks} tasks, measured after task {args.tasks}"
        + ("" if scenario == "task" else f", without the task id ({SCENARIO_NAMES[scenario]}; per-task modules: MSP)"),
        "tasks": [t.name for t in tasks],
        "task_sizes": {t.name: {"train": len(t.train), "validation": len(t.validation)} for t in tasks},
        "budget": (
            f"{args.trials} trials per method (Optuna TPE, seed {seed}); one trial = one training run over the tasks"
            "; a method without gradient training searches only its own options, one without options has one trial"
        ),
        "base_training": training.to_dict(),
        "base_plugin": plugin.to_dict(),
    }

    def report(row: dict) -> None:
        print(json.dumps(row), flush=True)

    for method in methods:
        study = tune_method(
            method,
            tasks,
            args.trials,
            storage,
            training,
            plugin,
            encoders,
            seed,
            f"{sequence.name}/",
            report,
            scenario=scenario,
        )
        entry = best_entry(study, method)
        write_tuned(output, {method: entry}, meta)
        print(
            f"{method}: best validation accuracy {entry['objective']:.2f} "
            f"with {entry['training'] | entry['method_options']} "
            f"({entry['trials']} trials{'; ' + entry['note'] if entry.get('note') else ''}) -> {output}",
            flush=True,
        )
    return 0


def cli() -> None:
    """The ``ctr-tune`` console command."""
    run_main(main)


if __name__ == "__main__":
    cli()
