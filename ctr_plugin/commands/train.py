"""ctr-train: train a frozen BERT with CTR plugins (or a baseline) over a sequence of classification tasks.

    ctr-train --output-dir runs/hl5                                  # the embedded default (hl5_products)
    ctr-train --config offline_mix --output-dir runs/mix             # a shipped sequence, by name
    ctr-train --config my_sequence.yaml --output-dir runs/mine       # or any YAML file
    ctr-train --datasets hl_canon_g3 my_reviews.csv --output-dir runs/mine
    ctr-train --config 20news10 --encoder bert-base-uncased \
        --adapter-size 2000 --epochs 10 --max-length 128 --output-dir runs/20news   # GPU
    ctr-train --from-checkpoint runs/hl5/checkpoint --datasets hl_canon_g3 ...
    accelerate launch --multi_gpu --num_processes 4 --mixed_precision bf16 -m ctr_plugin.commands.train \
        --config 20news10 --encoder bert-base-uncased --output-dir runs/20news  # 4 GPUs

Writes OUTPUT_DIR/checkpoint/ (after every task), OUTPUT_DIR/results.json and
OUTPUT_DIR/accuracy_matrix.png; see the README for what each holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from ctr_plugin.commands.runner import command_parser, run_main, setup_logging, whole_number
from ctr_plugin.data.config import DEFAULT_SEQUENCE, load_sequence_config
from ctr_plugin.experiments.option_flags import add_option_flags, option_flags_given
from ctr_plugin.experiments.tracking import REPORT_TO

log = logging.getLogger("ctr-train")

# What a task of --datasets keeps of each split (a seeded stratified subsample): CPU-sized, like the
# embedded default; the --max-*-per-task flags lift them.
DATASETS_CAPS = {"max_train": 300, "max_validation": 100, "max_test": 200}
CAP_FLAGS = {
    "max_train": "--max-train-per-task",
    "max_validation": "--max-validation-per-task",
    "max_test": "--max-test-per-task",
}


def datasets_caps_note(caps: dict[str, int | None]) -> str:
    """The caps a --datasets run applies, and the flags that lift them (its first log line)."""
    kept = f"{caps['max_train']} training, {caps['max_validation']} validation and {caps['max_test']} test"
    return (
        f"--datasets: each task keeps at most {kept} sentences (a seeded stratified subsample of each split); "
        f"lift the caps with {', '.join(f'{flag} N' for flag in CAP_FLAGS.values())}."
    )


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser(__doc__)
    data = p.add_argument_group("data")
    data.add_argument(
        "--config",
        help=(
            f"YAML task sequence: a path, or the name of a shipped one (default: {DEFAULT_SEQUENCE} unless --datasets)"
        ),
    )
    data.add_argument(
        "--datasets",
        nargs="+",
        help="bundled names, local csv/json files or hub names, in order. Each task is capped at "
        f"{DATASETS_CAPS['max_train']} training, {DATASETS_CAPS['max_validation']} validation and "
        f"{DATASETS_CAPS['max_test']} test sentences (a seeded stratified subsample), sized for a CPU: "
        "--max-train-per-task, --max-validation-per-task and --max-test-per-task lift them. Training options "
        f"default to those of the embedded default config ({DEFAULT_SEQUENCE}), as for a run without --config",
    )
    data.add_argument("--data-root", help="directory relative file paths in --config resolve against")
    data.add_argument(
        "--scenario",
        choices=("task", "domain", "class"),
        help="task id given at test time (task), or not: one label set across tasks (domain), new classes per "
        "task (class); default: the config's `scenario:`, else task",
    )
    data.add_argument(
        "--order", type=whole_number(0), help="learn the tasks in permutation ORDER of the config's orders file"
    )
    for key, flag in CAP_FLAGS.items():
        split = {"max_train": "training"}.get(key, key.removeprefix("max_"))
        data.add_argument(
            flag,
            type=int,
            metavar="N",
            help=f"cap on {split} examples per task (default: the config's; with --datasets, "
            f"{DATASETS_CAPS[key]}); a number above a task's size keeps all of it",
        )
    model = p.add_argument_group("model")
    model.add_argument(
        "--method", help="continual-learning method (default: ctr, or the checkpoint's with --from-checkpoint)"
    )
    model.add_argument(
        "--method-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of the method, e.g. --method-arg memory_size=500 (repeatable)",
    )
    model.add_argument(
        "--tuned",
        metavar="FILE",
        help="take the method's learning rate, epochs and options from a "
        "tuned-options file written by ctr-tune (a path, or a shipped one by its sequence's name: hl5_products)",
    )
    model.add_argument("--encoder", help="hub name or local model directory (default: the bundled all-MiniLM-L6-v2)")
    model.add_argument("--from-checkpoint", help="go on learning new tasks from this checkpoint directory")
    train = p.add_argument_group("devices")
    train.add_argument(
        "--device",
        help="cpu, cuda, cuda:1 ... (default: cuda if available); under accelerate launch, "
        "--device cpu runs one CPU process per rank",
    )
    train.add_argument(
        "--mixed-precision",
        choices=["no", "fp16", "bf16"],
        help="on GPUs (default: what accelerate launch / accelerate config set, else no); the CPU trains in float32",
    )
    out = p.add_argument_group("output")
    out.add_argument("--output-dir", help="where the checkpoint, results.json and plots go (required)")
    out.add_argument("--overwrite", action="store_true", help="replace a run already in --output-dir")
    out.add_argument(
        "--resume", metavar="DIR", help="continue the interrupted run in DIR with its own recorded options"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    out.add_argument(
        "--report-to",
        choices=REPORT_TO,
        help="experiment tracker for the loss per step, the validation curves and "
        "the accuracy matrix after each task (default none; tensorboard writes OUTPUT_DIR/tracking/)",
    )
    # every training and plugin option (--epochs, --lr, --adapter-size, --pooling, ...), with the
    # defaults of the embedded default config, which a run without --config (or with --datasets) takes
    add_option_flags(
        p, default_training=load_sequence_config(DEFAULT_SEQUENCE).training, default_config=DEFAULT_SEQUENCE
    )
    return p.parse_args(argv)


def parse_method_args(items: list[str]) -> dict[str, str]:
    """--method-arg KEY=VALUE pairs; the method converts and checks them."""
    from ctr_plugin.errors import CTRError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CTRError(f"--method-arg takes KEY=VALUE (e.g. memory_size=500), got {item!r}.")
        options[key.strip()] = value.strip()
    return options


def resolve_resume(args: argparse.Namespace, argv: list[str]) -> argparse.Namespace:
    """For --resume DIR: the options recorded when the run in DIR started, plus --resume."""
    from ctr_plugin.errors import CTRError
    from ctr_plugin.experiments.output_dir import COMMAND_FILE

    allowed = ("--resume", "--no-progress", "--device", "--mixed-precision", "--report-to")
    extra = [a for a in argv if a.startswith("--") and a.split("=")[0] not in allowed]
    if extra:
        raise CTRError(
            f"--resume takes its options from the interrupted run; remove {extra} "
            f"(only {', '.join(allowed[1:])} may be added)."
        )
    recorded = Path(args.resume) / COMMAND_FILE
    if not recorded.is_file():
        raise CTRError(
            f"Cannot resume {args.resume}: it has no {COMMAND_FILE}, "
            "so it is not a run started by ctr-train. Check the directory."
        )
    try:
        old = json.loads(recorded.read_text())["argv"]
    except (ValueError, KeyError, TypeError):
        raise CTRError(
            f"{recorded} is damaged; start the run again with its original options and --resume {args.resume} removed."
        ) from None
    resumed = parse_args(old)
    resumed.resume, resumed.output_dir = args.resume, args.resume
    resumed.no_progress = resumed.no_progress or args.no_progress
    resumed.device = args.device or resumed.device
    resumed.mixed_precision = args.mixed_precision or resumed.mixed_precision
    resumed.report_to = args.report_to or resumed.report_to
    return resumed


def main(argv=None) -> int:
    """Parse the flags, build the run's settings (every option checked there) and run it (which
    checks the devices, the output directory and the checkpoint before it loads the data)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    setup_logging()
    from ctr_plugin.data import load_tasks, resolve_config, sequence_from_names
    from ctr_plugin.errors import CTRError
    from ctr_plugin.experiments.run import run
    from ctr_plugin.experiments.settings import build_settings, select_tasks
    from ctr_plugin.experiments.tuning import check_tuned_scenario

    if args.resume:
        args = resolve_resume(args, argv)
    elif not args.output_dir:
        raise CTRError(
            "Name where the run goes with --output-dir DIR (or continue an interrupted run with --resume DIR)."
        )
    if args.datasets and args.config:
        raise CTRError("Give either --config or --datasets, not both.")
    if args.datasets:
        caps = {key: getattr(args, f"{key}_per_task") or cap for key, cap in DATASETS_CAPS.items()}
        log.info(datasets_caps_note(caps))
        sequence = sequence_from_names(args.datasets, DATASETS_CAPS)
        sequence.training = load_sequence_config(DEFAULT_SEQUENCE).training
        config_path = None
        config_name = f"the embedded default {DEFAULT_SEQUENCE} (whose training options --datasets runs take)"
    else:
        config_path = resolve_config(args.config or DEFAULT_SEQUENCE)
        sequence = load_sequence_config(config_path, data_root=args.data_root)
        config_name = f"the config {config_path}"
    sequence = select_tasks(
        sequence,
        args.order,
        max_train=args.max_train_per_task,
        max_validation=args.max_validation_per_task,
        max_test=args.max_test_per_task,
    )

    scenario = args.scenario or sequence.scenario
    check_tuned_scenario(args.tuned, scenario)  # options tuned in another scenario are not this one's
    settings = build_settings(
        args.method,
        config_training=sequence.training,
        config_name=config_name,
        flags=option_flags_given(args),
        method_args=parse_method_args(args.method_arg),
        tuned=args.tuned,
        progress=not args.no_progress,
        encoder=args.encoder or sequence.encoder,
        from_checkpoint=args.from_checkpoint,
        overwrite=args.overwrite,
        resume=bool(args.resume),
        device=args.device,
        mixed_precision=args.mixed_precision,
        report_to=args.report_to or "none",
    )
    # the sequence's scenario, or --scenario; the method is checked against it (RunSettings)
    settings = dataclasses.replace(settings, scenario=scenario)

    def load():  # run() calls this after its checks, so that a bad directory or device fails first
        log.info("Loading %d tasks of %s ...", len(sequence.tasks), sequence.name)
        tasks = load_tasks(sequence, seed=settings.training.seed)  # the data splits follow the run's seed
        for t in tasks:
            log.info(
                "  %-16s %d labels, train/validation/test = %d/%d/%d  (%s)",
                t.name,
                t.num_labels,
                len(t.train),
                len(t.validation),
                len(t.test),
                t.source,
            )
            for note in t.notes:
                log.info("  %-16s   %s", "", note)
        return tasks

    source = {
        "config": str(config_path) if config_path else None,
        "sequence": sequence.name,
        "order": args.order,
        "tuned": args.tuned,
        "scenario": settings.scenario,
    }
    command = {"argv": [a for a in argv if a != "--overwrite"]}
    results = run(load, settings, Path(args.output_dir), source, command=None if args.resume else command)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(
            f"final_acc={results['final_acc']:.2f} final_mf1={results['final_mf1']:.2f} "
            f"forgetting_rate={results['forgetting_rate']:.2f} -> {args.output_dir}"
        )
    return 0


def cli() -> None:
    """The ``ctr-train`` console command."""
    run_main(main)


if __name__ == "__main__":  # python -m ctr_plugin.commands.train (accelerate launch -m ...)
    cli()
