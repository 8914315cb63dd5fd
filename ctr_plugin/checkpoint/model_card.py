"""The model card (``README.md``) every checkpoint carries, written by ``save_pretrained``.

It says what a user must know before using the weights: the encoder and its licence, the tasks
with their label names, where each task's data came from and under which terms (a checkpoint
trained on non-commercial data says so at the top and in its licence field), the accuracy matrix
and metrics when the run measured them, the method with its options, and the package version.
The YAML front matter holds the fields the Hugging Face Hub reads (``library_name``, ``license``,
``tags``, ``base_model``, ``datasets``, ``pipeline_tag``, ``metrics``).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

# Encoders whose hub id and licence are known without reading their own card.
KNOWN_ENCODERS = {"bundled:all-MiniLM-L6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}
NON_COMMERCIAL = re.compile(r"non[- ]commercial|\bBY-NC\b|-NC-|\bNC\b", re.IGNORECASE)
# Licence phrases the data layer writes into a task's source line (ctr_plugin/data/bundled.py).
TERMS = re.compile(
    r"CC BY(?:-[A-Z]{2})*(?: \d\.\d)?|non-commercial research use|research use|Apache-2\.0|public domain",
    re.IGNORECASE,
)
HUB_DATASET = re.compile(r"HuggingFace hub data set '([^']+)'")


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
        hub_id = name_or_path
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
        source = _cell(task.get("source") or "not recorded")
        rows.append(
            f"| `{_cell(task['name'])}`{kind} | {labels} | {source} | {terms}{' **(non-commercial)**' if nc else ''} |"
        )
    return rows, non_commercial, datasets


def _front_matter(
    method: str | None,
    progress: dict,
    hub_id: str | None,
    encoder_licence: str | None,
    non_commercial: list[str],
    datasets: list[str],
) -> dict:
    """The YAML front matter the Hugging Face Hub reads."""
    meta: dict = {"library_name": "ctr_plugin", "pipeline_tag": "text-classification"}
    if non_commercial:
        meta |= {"license": "other", "license_name": "non-commercial-training-data"}
    else:
        meta["license"] = encoder_licence or "unknown"
    meta["tags"] = (
        ["ctr_plugin", "continual-learning", "text-classification"]
        + ([method] if method else [])
        + (["non-commercial"] if non_commercial else [])
    )
    if hub_id:
        meta["base_model"] = hub_id
    if datasets:
        meta["datasets"] = sorted(set(datasets))
    if progress.get("acc_matrix"):
        meta["metrics"] = ["accuracy", "f1"]
    return meta


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
    if config.get("method_options"):
        out.append("- method options: " + ", ".join(f"`{k}={v}`" for k, v in config["method_options"].items()))
    if config.get("seed") is not None:
        out.append(f"- seed: {config['seed']}")
    if config.get("training"):
        out.append("- training: " + ", ".join(f"`{k}={v}`" for k, v in config["training"].items()))
    out.append("- plugin config: " + ", ".join(f"`{k}={v}`" for k, v in config["plugin"].items()))
    out += [f"- ctr_plugin version: {version}", ""]
    return out


def model_card(config: dict, version: str | None = None) -> str:
    """The card for a checkpoint whose ``ctr_config.json`` content is ``config``."""
    if version is None:
        from ctr_plugin._version import __version__ as version
    encoder = config["encoder"]["name_or_path"]
    hub_id, encoder_licence = encoder_identity(encoder)
    tasks = config["tasks"]
    rows, non_commercial, datasets = _task_rows(tasks)
    method = config.get("method")
    progress = config.get("progress") or {}
    meta = _front_matter(method, progress, hub_id, encoder_licence, non_commercial, datasets)

    out = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", ""]
    title = f"{method or 'ctr_plugin'} continual-learning plugins for {hub_id or encoder}"
    out += [f"# {title}", ""]
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
    return "\n".join(out)
