"""ctr-relabel: rename or reorder a task's labels in a checkpoint, on purpose.

    ctr-relabel runs/hl5/checkpoint --task canon_g3 --labels negative,positive

A task's head has one output per label: output i is reported as the i-th label. The new list
(comma-separated, one label per output, in output order) replaces the names in ctr_config.json and
the model card, and the config's digest is rewritten with them; the weights are unchanged, so every
prediction of the task changes meaning. A checkpoint whose config was edited by hand is refused:
restore it first. From Python: ctr_plugin.checkpoint.relabelling.relabel_task (labels with commas).
"""

from __future__ import annotations

import argparse

from ctr_plugin.commands.runner import command_parser, run_main, setup_logging


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser(__doc__)
    p.add_argument("checkpoint", help="a checkpoint directory written by ctr-train or save_pretrained")
    p.add_argument("--task", required=True, help="the task's name (or id)")
    p.add_argument("--labels", required=True, help="the new labels, comma-separated, in output order")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from ctr_plugin.checkpoint.relabelling import relabel_task

    print(relabel_task(args.checkpoint, args.task, [label.strip() for label in args.labels.split(",")]))
    return 0


def cli() -> None:
    """The ``ctr-relabel`` console command."""
    run_main(main)


if __name__ == "__main__":
    cli()
