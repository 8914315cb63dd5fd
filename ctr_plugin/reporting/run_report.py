"""Readable output of a run: a text summary for the terminal, a heatmap of the accuracy matrix
and the per-epoch curves beside it; :func:`pyplot`, the one matplotlib set-up of every figure."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from ctr_plugin.errors import CTRError
from ctr_plugin.reporting.metrics import Matrix

log = logging.getLogger(__name__)
PLOTS_EXTRA = "pip install 'ctr_plugin[plots]' (or pip install matplotlib)"


def format_matrix(matrix: Matrix, tasks: list[str], title: str) -> str:
    """Row i = after training task i; blank where the task was not yet learned."""
    width = max(8, *(len(t) for t in tasks)) if tasks else 8
    short = [t[:10] for t in tasks]
    lines = [title, " " * (width + 2) + " ".join(f"{s:>10}" for s in short)]
    for name, row in zip(tasks, matrix):
        cells = " ".join(f"{v:>10.2f}" if v is not None else " " * 10 for v in row)
        lines.append(f"{name:<{width}}  {cells}")
    return "\n".join(lines)


def format_summary(results: dict) -> str:
    """The accuracy and macro-F1 matrices and the headline numbers of one results.json."""
    tasks = results["tasks"]
    parts = [
        format_matrix(
            results["acc_matrix"], tasks, "Test accuracy (%) after each task (rows) on each task (columns):"
        ),
        "",
        format_matrix(results["f1_matrix"], tasks, "Test macro-F1 (%):"),
        "",
    ]
    if "final_acc" in results:
        parts.append(
            f"{results.get('method', '')} after {len(tasks)} tasks: final accuracy {results['final_acc']:.2f}, "
            f"final macro-F1 {results['final_mf1']:.2f}, forward accuracy {results['forward_acc']:.2f}, "
            f"forgetting rate {results['forgetting_rate']:.2f} (BWT {results['bwt']:.2f}); "
            f"training took {results['train_seconds']:.0f} s."
        )
    return "\n".join(parts)


def can_draw() -> bool:
    """Whether matplotlib (the optional ``[plots]`` extra) is installed; when it is not, says once in
    the log that the figures are skipped and how to get them. Runs and tables draw only if True."""
    if importlib.util.find_spec("matplotlib") is not None:
        return True
    log.warning("No figures drawn: matplotlib is not installed. To draw them: %s.", PLOTS_EXTRA)
    return False


def pyplot():
    """``matplotlib.pyplot`` drawing to files only (the Agg backend: no display needed); a CTRError
    naming the ``[plots]`` extra when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise CTRError(f"Drawing figures needs matplotlib, which is not installed: {PLOTS_EXTRA}.") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_matrix(matrix: Matrix, tasks: list[str], path: str | Path, title: str = "Test accuracy (%)") -> None:
    """Save a heatmap of ``matrix`` (rows: after task i; columns: task j) as a PNG."""
    plt = pyplot()

    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    size = max(4.0, 0.7 * len(tasks) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(values, vmin=np.nanmin(values) if np.isfinite(values).any() else 0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(tasks)), [f"after {t}" for t in tasks])
    ax.set_xlabel("evaluated task")
    ax.set_title(title)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            if np.isfinite(values[i, j]):
                ax.text(
                    j,
                    i,
                    f"{values[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="white" if values[i, j] < 80 else "black",
                    fontsize=8,
                )
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(curves: list[dict], path: str | Path, title: str = "Per-epoch training and validation") -> None:
    """Save the per-epoch curves of a run (``results.json``'s ``curves``: one per trained task, each
    naming its task) as a PNG beside the heatmap: the training and validation loss (left) and the
    validation accuracy (right), epoch after epoch over the whole sequence, with a line where each
    task begins. A task trained without validation data has its training loss only."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    start = 1
    validated = False
    for curve in curves:
        name = curve["task"]
        epochs = list(range(start, start + len(curve["train_loss"])))
        loss_ax.plot(
            epochs,
            curve["train_loss"],
            "o-",
            color="tab:blue",
            label="training (the method's loss)" if start == 1 else None,
        )
        if curve.get("validation_loss"):  # none for a task given without validation data
            loss_ax.plot(
                epochs, curve["validation_loss"], "s--", color="tab:orange", label=None if validated else "validation"
            )
            acc_ax.plot(epochs, curve["validation_accuracy"], "s--", color="tab:orange")
            validated = True
        for ax in (loss_ax, acc_ax):
            ax.axvline(start - 0.5, color="grey", lw=0.5)
            ax.annotate(
                name[:14], (start - 0.4, 1.0), xycoords=("data", "axes fraction"), va="top", fontsize=7, rotation=90
            )
        start += len(epochs)
    loss_ax.set(xlabel="epoch (all tasks)", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch (all tasks)", ylabel="accuracy (%)", title="validation accuracy")
    loss_ax.legend(fontsize=8)
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
