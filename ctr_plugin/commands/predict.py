"""ctr-predict: classify texts with a trained checkpoint, by task: one JSON object per text on stdout.

    ctr-predict --checkpoint runs/hl5/checkpoint --task canon_g3 \
        "The pictures are sharp and bright." "Battery life is awful."
    ctr-predict --checkpoint runs/hl5/checkpoint --list-tasks
    cat sentences.txt | ctr-predict --checkpoint runs/hl5/checkpoint --task nokia_6610 -
    ctr-predict --checkpoint runs/asc/checkpoint --task laptop "battery" --pair "The battery lasts all day."
    printf 'battery\tThe battery lasts all day.\n' | ctr-predict --checkpoint runs/asc/checkpoint --task laptop -
    ctr-predict --checkpoint runs/hl5_domain/checkpoint "Battery life is awful."   # no task: inferred

Without --task, a Domain-IL or Class-IL checkpoint answers among every class it knows: a shared
head directly, per-task modules by inferring the task (--task-score msp or energy; each line then
holds the inferred task and its probability). A Task-IL checkpoint needs --task, or --task-score to
infer the task from its per-task heads (never trained for that: expect lower accuracy).

A task trained on text pairs (aspect + sentence) needs both texts: --pair once per text, in the
same order, or '-' with one tab-separated pair per line. Empty or whitespace-only texts are refused.
"""

from __future__ import annotations

import argparse
import json
import sys

from ctr_plugin.commands.runner import command_parser, run_main, setup_logging, whole_number


def parse_args(argv=None) -> argparse.Namespace:
    p = command_parser(__doc__)
    p.add_argument("--checkpoint", required=True, help="a checkpoint directory written by ctr-train")
    p.add_argument("--task", help="task name (or id) the texts belong to; omit it to let the model infer the task")
    p.add_argument(
        "--task-score",
        choices=("msp", "energy"),
        help="without --task: how the task is inferred (maximum softmax probability or energy; default msp; "
        "a Task-IL checkpoint needs it named)",
    )
    p.add_argument("--encoder", help="where the checkpoint's encoder lives, if not where it was trained")
    p.add_argument("--batch-size", type=whole_number(1), default=32, help="texts per forward pass (default 32)")
    p.add_argument(
        "--max-length", type=whole_number(1), help="tokens per text (default: 128, or the encoder's limit if lower)"
    )
    p.add_argument(
        "--pair", action="append", metavar="TEXT", help="the second text of a text-pair task, once per text, in order"
    )
    p.add_argument("--logits", action="store_true", help="include the raw logits")
    p.add_argument("--list-tasks", action="store_true", help="print the checkpoint's tasks and labels")
    p.add_argument("texts", nargs="*", help="texts to classify; '-' reads one text per line from stdin")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    from ctr_plugin.errors import CTRError
    from ctr_plugin.modeling.model import ContinualModel

    model = ContinualModel.from_pretrained(args.checkpoint, encoder=args.encoder)
    if args.list_tasks:
        for i, (name, labels) in enumerate(
            zip(model.task_names, model.label_names)
        ):  # pair: the task takes text pairs
            print(json.dumps({"task_id": i, "task": name, "labels": labels, "pair": model.task_pairs[i]}))
        return 0
    if args.batch_size < 1:
        raise CTRError(f"--batch-size must be at least 1, got {args.batch_size}.")
    task = None
    if args.task is not None:
        task = int(args.task) if args.task.isdigit() and args.task not in model.task_names else args.task
    wants_pairs = any(model.task_pairs) if task is None else model.task_pairs[model.task_id(task)]
    texts, pairs = args.texts, args.pair
    if args.texts == ["-"]:
        if args.pair:
            raise CTRError(
                "--pair cannot be combined with '-': for a text-pair task, give FIRST<TAB>SECOND lines on stdin."
            )
        lines = [line.rstrip("\r\n") for line in sys.stdin]
        blank = [i + 1 for i, line in enumerate(lines) if not line.strip()]
        if blank:
            raise CTRError(
                f"stdin lines {blank[:5]} are empty or whitespace only: "
                "there is nothing to classify in them. Remove them."
            )
        texts, pairs = lines, None
        if wants_pairs:
            split = [line.split("\t", 1) for line in lines]
            bad = [i + 1 for i, parts in enumerate(split) if len(parts) != 2]
            if bad:
                raise CTRError(
                    f"Task {args.task!r} takes text pairs: each stdin line must be FIRST<TAB>SECOND, "
                    f"but lines {bad[:5]} have no tab."
                )
            texts, pairs = [a for a, _ in split], [b for _, b in split]
    if not texts:
        raise CTRError("No texts given: pass them as arguments, or '-' to read one per line from stdin.")
    if pairs is not None and len(pairs) != len(texts):
        raise CTRError(
            f"{len(texts)} texts but {len(pairs)} --pair values: give one --pair per text, in the same order."
        )
    predictions = model.predict(
        texts, task=task, pairs=pairs, batch_size=args.batch_size, max_length=args.max_length, score=args.task_score
    )
    for i, (text, pred) in enumerate(zip(texts, predictions)):
        out = (
            {"text": text}
            | ({"pair": pairs[i]} if pairs else {})
            | {"task": pred.task, "label": pred.label, "probability": round(pred.probability, 6)}
            | ({"task_score": round(pred.task_score, 6)} if pred.task_score is not None else {})
        )
        if args.logits:
            out["logits"] = pred.logits
        print(json.dumps(out))
    return 0


def cli() -> None:
    """The ``ctr-predict`` console command."""
    run_main(main)


if __name__ == "__main__":
    cli()
