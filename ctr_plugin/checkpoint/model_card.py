"""The model card (``README.md``) every checkpoint carries, written by ``save_pretrained``.

It says what a user must know before using the weights: the encoder and its licence, the tasks
with their label names, where each task's data came from and under which terms (a checkpoint
trained on non-commercial data says so at the top and in its licence field), the accuracy matrix
and metrics when the run measured them, the method with its options, and the package version.
The YAML front matter holds the fields the Hugging Face Hub reads (``library_name``, ``license``,
``tags``, ``base_model``, ``datasets``, ``metrics``, and ``model-index`` with the final accuracies),
built with ``huggingface_hub``'s ``ModelCardData`` / ``EvalResult`` and checked by parsing the card
back as a ``ModelCard``. It declares no ``pipeline_tag`` and ``inference: false``: the Hub has no
widget that can serve these plugins (the task of each text must be given). The card names no local
absolute path: a local encoder directory or data file appears by its base name only.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

# Encoders whose hub id and licence are known without reading their own card.
KNOWN_ENCODERS = {"bundled:all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}
NON_COMMERCIAL = re.compile(r"non[- ]commercial|\bBY-NC\b|-NC-|\bNC\b", re.IGNORECASE)
# Licence phrases the data layer writes into a task's source line (ctr_plugin/data/bundled.py).
TERMS = re.compile(
    r"CC BY(?:-[A-Z]{2})*(?: \d\.\d)?|non-commercial research use|research use|Apache-2\.0|public domain",
    re.IGNORECASE,
)
HUB_DATASET = re.compile(r"HuggingFace hub data set '([^']+)'")
# The order of the front matter's keys (``model-index``, the longest, last).
FRONT_ORDER = ["library_name", "license", "license_name", "tags", "base_model", "datasets", "metrics", "inference"]
# An absolute path in free text (POSIX, a Windows drive or a UNC share), not inside a URL or a word.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/\\~-])(?:/|[A-Za-z]:[\\/]|\\\\)[^\s,;'\"`|()]*")
# The source line of a task read from files (ctr_plugin/data/readers.py): "local files: train=..., test=...".
LOCAL_FILES = "local files: "
FILE_SPLIT = re.compile(r"(train|validation|test)=(.*?)(?=, (?:train|validation|test)=|$)")


def local_name(path: str) -> str:
    """The base name of an absolute path (POSIX or Windows), else ``path`` as it is."""
    for pure in (PurePosixPath, PureWindowsPath):
        candidate = pure(path)
        if candidate.is_absolute():
            return candidate.name or path
    return path


def _scrub(text: str) -> str:
    """``text`` with every absolute path in it written as its base name."""
    return ABSOLUTE_PATH.sub(lambda m: local_name(m.group(0)), text)


def public_source(source: str | None) -> str | None:
    """A task's source line as the card shows it: data files by their base names, no local absolute path."""
    if not source:
        return source
    if source.startswith(LOCAL_FILES):
        files = source[len(LOCAL_FILES) :]
        return LOCAL_FILES + FILE_SPLIT.sub(lambda m: f"{m.group(1)}={local_name(m.group(2))}", files)
    return _scrub(source)


def encoder_name(name_or_path: str) -> tuple[str, bool]:
    """(the encoder's name as the card shows it, whether it is a local directory): a hub name and the
    bundled encoder as they are, a local directory by its base name."""
    if name_or_path in KNOWN_ENCODERS:
        return name_or_path, False
    if Path(name_or_path).is_dir() or local_name(name_or_path) != name_or_path:
        return Path(name_or_path).name or local_name(name_or_path), True
    return name_or_path, False


def data_terms(source: str | None) -> tuple[str, bool]:
    """(the terms named in a task's source line, whether they forbid commercial use)."""
    if not source:
        return "not recorded: check the data's own terms", False
    found = TERMS.findall(source)
    if found:
        terms = "; ".join(dict.fromkeys(found))
    elif HUB_DATASET.search(source):
        terms = "see the data set's card on the Hub"
    else:
        terms = "not recorded: check the data's own terms"
    return terms, bool(NON_COMMERCIAL.search(source))


def encoder_identity(name_or_path: str) -> tuple[str | None, str | None]:
    """(hub id, licence) of the encoder, where they can be known offline: the bundled MiniLM, or
    the YAML front matter of the encoder's own README (a local directory or the hub cache)."""
    if name_or_path in KNOWN_ENCODERS:
        return KNOWN_ENCODERS[name_or_path]
    readme = Path(name_or_path) / "README.md"
    hub_id = None
    if not Path(name_or_path).is_dir():
        # an absolute path that is gone is no hub id: the card must not name it as its base model
        hub_id = name_or_path if local_name(name_or_path) == name_or_path else None
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError

        try:
            cached = try_to_load_from_cache(name_or_path, "README.md")
            readme = Path(cached) if isinstance(cached, str) else None
        except HFValidationError:  # not a repo id (a path that is gone): nothing cached
            readme = None
    licence = None
    if readme is not None and readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        if text.startswith("---"):
            try:
                meta = yaml.safe_load(text.split("---", 2)[1]) or {}
            except yaml.YAMLError:
                meta = {}
            licence = meta.get("license") if isinstance(meta, dict) else None
    return hub_id, licence


def _cell(value) -> str:
    """``value`` as text that stays inside one cell of a Markdown table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _matrix_table(tasks: list[str], matrix: list[list[float | None]]) -> str:
    lines = ["| after \\ on | " + " | ".join(map(_cell, tasks)) + " |", "|---" * (len(tasks) + 1) + "|"]
    for name, row in zip(tasks, matrix):
        if all(v is None for v in row):
            continue
        lines.append(f"| {_cell(name)} | " + " | ".join("" if v is None else f"{v:.2f}" for v in row) + " |")
    return "\n".join(lines)


def _task_rows(tasks: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(the table rows of the tasks, the tasks trained on non-commercial data, the Hub data sets used)."""
    rows, non_commercial, datasets = [], [], []
    for task in tasks:
        terms, nc = data_terms(task.get("source"))
        if nc:
            non_commercial.append(task["name"])
        if (hub := HUB_DATASET.search(task.get("source") or "")) is not None:
            datasets.append(hub.group(1))
        labels = ", ".join(f"`{_cell(label)}`" for label in task["labels"])
        kind = " (text pairs)" if task.get("pair") else ""
        source = _cell(public_source(task.get("source")) or "not recorded")
        rows.append(
            f"| `{_cell(task['name'])}`{kind} | {labels} | {source} | {terms}{' **(non-commercial)**' if nc else ''} |"
        )
    return rows, non_commercial, datasets


def final_row(progress: dict) -> list[float | None] | None:
    """The last row of the run's accuracy matrix that holds a score (after the last task learned), or None."""
    rows = [row for row in progress.get("acc_matrix") or [] if any(v is not None for v in row)]
    return rows[-1] if rows else None


def eval_results(tasks: list[dict], progress: dict) -> list[EvalResult]:
    """The ``model-index`` results: each task's test accuracy (%) after the last task learned, and the final
    average accuracy and macro-F1 when the run recorded them; none when it measured nothing."""
    row = final_row(progress)
    if row is None:
        return []
    hub = {t["name"]: m.group(1) for t in tasks if (m := HUB_DATASET.search(t.get("source") or ""))}
    shared = {h for h in hub.values() if list(hub.values()).count(h) > 1}
    out = [
        EvalResult(
            task_type="text-classification",
            # a Hub data set's id where the task has one of its own, so that the Hub links it; else the task's name
            dataset_type=hub[name] if hub.get(name) not in (None, *shared) else name,
            dataset_name=name,
            dataset_split="test",
            metric_type="accuracy",
            metric_name="test accuracy (%) after the last task",
            metric_value=value,
        )
        for name, value in zip(progress["tasks"], row)
        if value is not None
    ]
    averages = (
        ("final_acc", "accuracy", "final average accuracy (%)"),
        ("final_mf1", "f1", "final average macro-F1 (%)"),
    )
    for key, metric, label in averages:
        if progress.get(key) is not None:
            out.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type="ctr_plugin-task-sequence",
                    dataset_name=f"mean over the {len(progress['tasks'])} tasks",
                    dataset_split="test",
                    metric_type=metric,
                    metric_name=label,
                    metric_value=progress[key],
                )
            )
    return out


def card_data(
    method: str | None,
    progress: dict,
    identity: tuple[str | None, str | None],
    tasks: list[dict],
    non_commercial: list[str],
    datasets: list[str],
    model_name: str,
) -> ModelCardData:
    """The YAML front matter the Hugging Face Hub reads, as ``huggingface_hub``'s ``ModelCardData``."""
    hub_id, encoder_licence = identity
    results = eval_results(tasks, progress)
    return ModelCardData(
        library_name="ctr_plugin",
        license="other" if non_commercial else encoder_licence or "unknown",
        license_name="non-commercial-training-data" if non_commercial else None,
        tags=(
            ["ctr_plugin", "continual-learning", "text-classification"]
            + ([method] if method else [])
            + (["non-commercial"] if non_commercial else [])
        ),
        base_model=hub_id or None,
        datasets=sorted(set(datasets)) or None,
        metrics=["accuracy", "f1"] if progress.get("acc_matrix") else None,
        eval_results=results or None,
        model_name=model_name if results else None,
        # No hosted widget: predicting needs ctr_plugin and the task of each text, which no Hub pipeline gives.
        inference=False,
    )


def _results_section(progress: dict) -> list[str]:
    """The "Results" section: the accuracy matrix and summary metrics, when the run measured them."""
    if not progress.get("acc_matrix"):
        return ["## Results", "", "Not recorded with this checkpoint.", ""]
    out = [
        "## Results",
        "",
        "Test accuracy (%) after learning each task (rows) on each task (columns):",
        "",
        _matrix_table(progress["tasks"], progress["acc_matrix"]),
        "",
    ]
    metrics = {
        k: progress[k]
        for k in ("final_acc", "final_mf1", "forward_acc", "forgetting_rate", "bwt", "max_forgetting")
        if progress.get(k) is not None
    }
    if metrics:
        out += ["| metric | value |", "|---|---|", *(f"| {k} | {v:.2f} |" for k, v in metrics.items()), ""]
    elif progress.get("metrics_unavailable"):
        out += [f"Summary metrics not available: {progress['metrics_unavailable']}", ""]
    out += [
        "Definitions: final accuracy = mean of the last row; forward accuracy = mean of the diagonal; "
        "forgetting rate = mean over earlier tasks of (accuracy when learned − final accuracy).",
        "",
    ]
    return out


def _training_section(config: dict, method: str | None, version: str) -> list[str]:
    """The "Training" section: the method, its options, the seed, the settings and the package version."""
    out = ["## Training", "", f"- method: `{method or 'not recorded'}`"]
    scenario = config.get("scenario") or {}
    out.append(
        f"- scenario: {scenario.get('name', 'task')}-incremental"
        + (" (one head shared by every task's classes)" if scenario.get("shared_head") else "")
        + (" (each task head with an outlier class, trained by OOD replay)" if scenario.get("outlier_class") else "")
        + ("" if scenario.get("name", "task") == "task" else "; predictions need no task id")
    )
    if config.get("method_options"):
        out.append(
            "- method options: " + ", ".join(f"`{k}={_scrub(str(v))}`" for k, v in config["method_options"].items())
        )
    if config.get("seed") is not None:
        out.append(f"- seed: {config['seed']}")
    if config.get("training"):
        out.append("- training: " + ", ".join(f"`{k}={_scrub(str(v))}`" for k, v in config["training"].items()))
    out.append("- plugin config: " + ", ".join(f"`{k}={v}`" for k, v in config["plugin"].items()))
    out += [f"- ctr_plugin version: {version}", ""]
    return out


def model_card(config: dict, version: str | None = None) -> str:
    """The card for a checkpoint whose ``ctr_config.json`` content is ``config``."""
    if version is None:
        from ctr_plugin._version import __version__ as version
    hub_id, encoder_licence = encoder_identity(config["encoder"]["name_or_path"])
    encoder, local = encoder_name(config["encoder"]["name_or_path"])
    tasks = config["tasks"]
    rows, non_commercial, datasets = _task_rows(tasks)
    method = config.get("method")
    progress = config.get("progress") or {}
    title = f"{method or 'ctr_plugin'} continual-learning plugins for {hub_id or encoder}"
    data = card_data(method, progress, (hub_id, encoder_licence), tasks, non_commercial, datasets, title)

    out = [f"# {title}", ""]
    if non_commercial:
        out += [
            (
                f"> **Non-commercial use only.** The tasks {', '.join(f'`{n}`' for n in non_commercial)} "
                "were trained on data whose terms forbid commercial use (see the table below); "
                "these weights carry those terms."
            ),
            "",
        ]
    out += [
        (
            f"Plugins (CL-plugins: {config['plugin']['plugin_type']}) injected into every layer of a frozen "
            f"encoder, with one classification head per task, trained task after task by ctr_plugin {version}. "
            "The task of each text is given at prediction time (task-incremental learning)."
        ),
        "",
        "## Use",
        "",
        "```python",
        "from ctr_plugin import ContinualModel",
        "",
        'model = ContinualModel.from_pretrained("<this repo id or folder>")  # encoder=... to pass one already loaded',
        f'model.predict(["some text"], task="{tasks[0]["name"]}")' if tasks else "",
        "```",
        "",
        "## Encoder",
        "",
        f"`{encoder}`"
        + (" (a local directory, named here without its path)" if local else "")
        + (f" (Hub: `{hub_id}`)" if hub_id and hub_id != encoder else "")
        + f", licence: {encoder_licence or 'not recorded here: see the encoder’s own card'}. "
        "Its weights are not part of this checkpoint: they are loaded from where it names them, and checked against "
        "a fingerprint of their embeddings."
        + (
            " This model fine-tunes the encoder, so its trained weights are in `plugins.safetensors`."
            if config.get("train_encoder")
            else ""
        ),
        "",
        "## Tasks and their data",
        "",
        "| task | labels (id order) | data source | terms |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    out += _results_section(progress)
    out += _training_section(config, method, version)
    # Parsed back by huggingface_hub: a card the Hub cannot read fails here, at the save, not on the Hub.
    front = data.to_yaml(original_order=FRONT_ORDER)
    return str(ModelCard(f"---\n{front}\n---\n\n" + "\n".join(out)))
