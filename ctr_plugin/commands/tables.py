"""ctr-tables: run every method over several task orders and seeds, then write paper-style Task-CL tables.

    ctr-tables --output-dir tables/hl5 --orders 3 --seeds 1      # all methods, the embedded default
    ctr-tables --config hl5_products \
        --methods ctr adapter_one adapter_ncl frozen_heads --orders 3 --seeds 2 \
        --max-train-per-task 200 --epochs 2 --max-length 48 --output-dir tables/hl5_small
    ctr-tables --output-dir tables/hl5 --rebuild-only           # no training

Each (method, order k, seed s) runs through ``ctr_plugin.experiments.run.run`` into
OUTPUT_DIR/runs/<method>/order<k>_seed<s>/; a run whose results.json is complete is skipped, so an
interrupted grid continues where it stopped and a grid can be extended, but only if it was made with
this command's options and data (compared first: a finished run made with others is refused, naming
both values, before anything trains). Order k is permutation k
of the orders file beside the config (<config stem>.orders.yaml). Test sets are not capped unless
--max-test-per-task says so (the config's max_test is lifted). Then OUTPUT_DIR gets table.md,
table.tex, table.csv, comparisons.csv, heatmaps/<method>.png, final_scores.png and comparisons.png
(see ctr_plugin/experiments/grid_summary.py): per method mean ± std and 95 % CI over runs, and CTR paired with every
other method over matched runs, with the verdict "better", "worse" or "within noise".

The config's ``scenario:`` (task, domain or class) is every run's, and the tables' heading names
it. In Domain-/Class-IL the tables add the accuracy over all tasks seen so far after each task and
the task-id accuracy of the methods that infer the task (msp and energy), with scenario.csv
(ctr_plugin/experiments/grid_scenarios.py). A grid holds one scenario: runs of another under
OUTPUT_DIR, or a --tuned file tuned in another scenario, are refused before anything trains.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ctr_plugin.commands.runner import command_parser, run_main, setup_logging, whole_number
from ctr_plugin.data.config import DEFAULT_SEQUENCE, load_sequence_config
from ctr_plugin.experiments.option_flags import OPTION_NAMES, add_option_flags, option_flags_given

log = logging.getLogger("ctr-tables")


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser(__doc__)
    p.add_argument(
        "--config",
        default=DEFAULT_SEQUENCE,
        help=f"YAML task sequence: a path, or the name of a shipped one (default: {DEFAULT_SEQUENCE})",
    )
    p.add_argument("--data-root", help="directory relative file paths in --config resolve against")
    p.add_argument("--methods", nargs="+", help="methods to run (default: all of them)")
    p.add_argument(
        "--orders", type=whole_number(1), default=3, help="run the first K task orders of the orders file (default 3)"
    )
    p.add_argument("--seeds", type=whole_number(1), default=1, help="run seeds 0..S-1 (default 1)")
    p.add_argument("--output-dir", required=True, help="where runs/ and the tables go")
    p.add_argument("--rebuild-only", action="store_true", help="only rebuild the tables from the runs already there")
    p.add_argument("--encoder", help="hub name or local model directory (default: the config's)")
    p.add_argument("--max-train-per-task", type=int, help="cap on training examples per task")
    p.add_argument(
        "--max-test-per-task",
        type=int,
        help="cap on test examples per task (default: no cap, every test example the split gives, "
        "whatever the config's max_test; the tables state the sizes)",
    )
    p.add_argument(
        "--method-arg",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="an option of one method, e.g. replay:memory_size=100 (repeatable)",
    )
    p.add_argument(
        "--tuned",
        metavar="FILE",
        help="each method's learning rate, epochs and options from this file "
        "(ctr-tune; a path, or a shipped one by its sequence's name); flags and --method-arg may not contradict it",
    )
    p.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    add_option_flags(  # the seeds are the grid's: --seeds
        p,
        only=OPTION_NAMES - {"seed"},
        default_training=load_sequence_config(DEFAULT_SEQUENCE).training,
        default_config=DEFAULT_SEQUENCE,
    )
    return p.parse_args(argv)


def method_options(items: list[str]) -> dict[str, dict[str, str]]:
    from ctr_plugin.errors import CTRError

    options: dict[str, dict[str, str]] = {}
    for item in items:
        method, _, pair = item.partition(":")
        key, sep, value = pair.partition("=")
        if not sep or not method or not key:
            raise CTRError(f"--method-arg takes METHOD:KEY=VALUE (e.g. replay:memory_size=100), got {item!r}.")
        options.setdefault(method.strip(), {})[key.strip()] = value.strip()
    return options


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from tqdm.auto import tqdm

    from ctr_plugin.continual.methods import METHODS
    from ctr_plugin.data import load_tasks, resolve_config, sequence_orders
    from ctr_plugin.errors import CTRError
    from ctr_plugin.experiments.grid_scenarios import grid_title, scenario_of
    from ctr_plugin.experiments.grid_summary import RUNS_DIR, load_runs
    from ctr_plugin.experiments.grid_tables import build_tables
    from ctr_plugin.experiments.output_dir import check_output_dir
    from ctr_plugin.experiments.resume import check_reused_run
    from ctr_plugin.experiments.run import run
    from ctr_plugin.experiments.settings import build_settings, select_tasks
    from ctr_plugin.experiments.tuning import check_tuned_scenario
    from ctr_plugin.reporting.results import read_complete

    methods = args.methods or list(METHODS)
    output_dir = Path(args.output_dir)
    if not args.rebuild_only:
        check_output_dir(output_dir, overwrite=True)  # a file in its place, or no permission: before any data loads
    config_path = resolve_config(args.config)
    sequence = load_sequence_config(config_path, data_root=args.data_root)
    scenario = sequence.scenario
    title = grid_title(sequence.name, scenario, len(sequence.tasks))
    if not args.rebuild_only:
        options = method_options(args.method_arg)
        check_tuned_scenario(args.tuned, scenario)  # options tuned in another scenario are not this one's
        scenario_of(load_runs(output_dir), scenario, str(output_dir / RUNS_DIR))  # one scenario per grid

        def settings_of(method: str, seed: int):
            return build_settings(
                method,
                config_training=sequence.training,
                config_name=f"the config {config_path}",
                flags=option_flags_given(args) | {"seed": seed},
                method_args=options.get(method),
                tuned=args.tuned,
                progress=False,
                encoder=args.encoder or sequence.encoder,
                overwrite=True,
                device=args.device,
                scenario=scenario,
            )

        for method in methods:  # unknown methods and options, and conflicts, fail now, not an hour in
            settings_of(method, 0)
        orders = sequence_orders(sequence, "--orders")
        if not 1 <= args.orders <= len(orders):
            raise CTRError(f"--orders {args.orders}: {sequence.orders_file} holds {len(orders)} orders.")

        def tasks_of(k: int):
            # Test sets as large as the data allow unless capped here: a small test set makes a
            # one-sentence difference a point of accuracy.
            return select_tasks(
                sequence,
                k,
                max_train=args.max_train_per_task,
                max_test=args.max_test_per_task,
                test_cap_from_config=False,
            )

        tasks_of(0)  # a bad cap fails now
        grid = [(k, s, m) for k in range(args.orders) for s in range(args.seeds) for m in methods]

        def run_dir(k: int, s: int, m: str) -> Path:
            return output_dir / RUNS_DIR / m / f"order{k}_seed{s}"

        loaded: tuple[int, int, list] | None = None

        def tasks_for(k: int, s: int) -> list:
            nonlocal loaded
            if loaded is None or loaded[:2] != (k, s):  # the data of one order and seed, loaded once
                loaded = (k, s, load_tasks(tasks_of(k), seed=s))
            return loaded[2]

        # A finished run is reused only if this command would make the same one: its options and
        # data are compared first, before anything trains (else the old runs are tabled as new).
        finished = set()
        for cell in grid:
            recorded = read_complete(run_dir(*cell))
            if recorded is not None:
                k, s, method = cell
                check_reused_run(run_dir(*cell), recorded, settings_of(method, s), tasks_for(k, s))
                finished.add(cell)
        done = len(finished)
        bar = tqdm(total=len(grid), initial=done, desc="grid", unit="run")
        start = time.perf_counter()
        for k, s, method in grid:
            target = run_dir(k, s, method)
            if (k, s, method) in finished:
                continue
            bar.set_postfix_str(f"{method} order {k} seed {s}")
            settings = settings_of(method, s)
            source = {"config": str(config_path), "sequence": sequence.name, "order": k, "tuned": args.tuned}
            source["scenario"] = scenario
            run(tasks_for(k, s), settings, target, source)
            bar.update(1)
        bar.close()
        log.info(
            "Grid done: %d runs, %d trained now in %.0f s.", len(grid), len(grid) - done, time.perf_counter() - start
        )
    rows = build_tables(output_dir, title, scenario)
    if not rows:
        raise CTRError(f"No complete run under {output_dir / RUNS_DIR}: nothing to tabulate.")
    print((output_dir / "table.md").read_text())
    return 0


def cli() -> None:
    """The ``ctr-tables`` console command."""
    run_main(main)


if __name__ == "__main__":
    cli()
