"""Task sequences: the YAML config format, ``--datasets`` name lists, and task-order files.

A sequence config (see ``data_configs/*.yaml``; shipped ones are addressable by name)::

    name: hl5_products
    description: ...
    encoder: null          # default encoder (null = the bundled MiniLM); the CLI may override
    scenario: task         # task | domain | class (data/scenarios.py); the CLI's --scenario overrides
    base: null             # optional: a shipped sequence (or path) whose keys this file's override;
                           # its task orders serve when this config has no orders file of its own
    training: {...}        # free-form training defaults, passed through untouched
    data_root: ..          # optional; base of relative file paths (see resolve_data_root)
    defaults: {...}        # task options applied to every task unless the task sets them
    tasks:
      - {name: apex_dvd, source: bundled, dataset: hl_apex_dvd}

Every task entry becomes a :class:`TaskSpec`; :func:`ctr_plugin.data.load_tasks` turns the specs
into data.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctr_plugin.data.scenarios import DEFAULT_SCENARIO
from ctr_plugin.data.yaml_files import load_yaml_file, read_text
from ctr_plugin.errors import DataError
from ctr_plugin.options import SCENARIOS

SOURCES = ("bundled", "files", "hub")
SPLITS = ("train", "validation", "test")
FILE_FORMATS = ("csv", "tsv", "json", "jsonl")
SOURCE_KEYS = {
    "bundled": ("dataset",),
    "files": ("train", "validation", "test", "format"),
    "hub": ("path", "config", "split_names"),
}
DATA_ROOT_ENV = "CTR_DATA_ROOT"
# Task keys whose values are names, paths or column names: strings (or null), never numbers or lists.
STRING_KEYS = ("source", "dataset", "train", "validation", "test", "format", "encoding", "path", "config", "label")


@dataclass
class TaskSpec:
    """Where one task's data comes from and how to turn it into splits.

    Which keys apply depends on ``source`` (inferred when omitted: ``dataset`` means bundled,
    ``train`` means files, ``path`` means hub).
    """

    name: str
    source: str | None = None  # bundled | files | hub
    dataset: str | None = None  # bundled: a name in BUNDLED_DATASETS
    train: str | None = None  # files: path of the training split
    validation: str | None = None  # files: optional; carved from train when absent
    test: str | None = None  # files: optional; carved from train when absent
    format: str | None = None  # files: csv | tsv | json | jsonl (default: from the extension)
    encoding: str = "utf-8"  # files: text encoding
    path: str | None = None  # hub: data set name for datasets.load_dataset
    config: str | None = None  # hub: the data set's config (subset) name
    split_names: dict[str, str] | None = None  # hub: {train|validation|test: the hub's split}
    text: str | list[str] = "text"  # text column, or [first, second] columns of a text pair
    label: str = "label"  # label column (ints or strings)
    labels: list[Any] | None = None  # keep only these label values, renumbered 0..K-1 in order
    label_names: list[str] | None = None  # display names of the K classes
    drop_empty_texts: bool = False  # drop rows with a missing/empty text instead of failing
    drop_other_labels: bool = False  # with `labels:`, drop rows whose label is not listed instead of failing
    drop_test_overlap: bool = False  # drop test/validation examples that also occur in train instead of failing
    max_train: int | None = None  # caps: seeded stratified subsample of each split
    max_validation: int | None = None
    max_test: int | None = None
    test_fraction: float = 0.2  # share of the pool carved out as test when there is no test
    validation_fraction: float = 0.1  # share of the rest carved out as validation

    def __post_init__(self) -> None:
        where = f"Task '{self.name}'"
        self._check_name()
        self._check_value_types(where)
        self._resolve_source(where)
        self._check_text(where)
        self._check_sizes(where)
        self._check_key_shapes(where)

    def _check_name(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise DataError(f"A task has no name (got {self.name!r}): give every task a non-empty `name:`.")

    def _check_value_types(self, where: str) -> None:
        """Names, paths and column names are strings; switches are true/false; listed labels are values."""
        for key in STRING_KEYS:
            value = getattr(self, key)
            if (value is not None or key in ("encoding", "label")) and not isinstance(value, str):
                raise DataError(
                    f"{where}: `{key}:` must be a string, got {_described(value)}. Quote it in the YAML "
                    f"(`{key}: '...'`) if it is meant as written."
                )
        if isinstance(self.split_names, dict) and not all(isinstance(v, str) for v in self.split_names.values()):
            raise DataError(f"{where}: `split_names:` must map splits to hub split names (strings).")
        for key in ("drop_empty_texts", "drop_other_labels", "drop_test_overlap"):
            if not isinstance(getattr(self, key), bool):
                raise DataError(f"{where}: `{key}:` must be true or false, got {_described(getattr(self, key))}.")
        for key in ("labels", "label_names"):
            values = getattr(self, key)
            if isinstance(values, list) and not all(isinstance(v, str | int | float) for v in values):
                raise DataError(
                    f"{where}: `{key}:` must list single values (names or numbers), but one of them is a list "
                    "or mapping."
                )

    def _resolve_source(self, where: str) -> None:
        """Check that the task names one source, infer ``source`` when omitted, and require its key."""
        named = {source: [key for key in keys if getattr(self, key)] for source, keys in SOURCE_KEYS.items()}
        named = {source: keys for source, keys in named.items() if keys}
        if len(named) > 1 or (self.source in SOURCE_KEYS and set(named) - {self.source}):
            listed = "; ".join(f"{', '.join(f'`{k}:`' for k in keys)} ({source})" for source, keys in named.items())
            raise DataError(
                f"{where} names more than one source: "
                f"{listed}{f', with `source: {self.source}`' if self.source else ''}. "
                "A task reads one source: keep the keys of one (check `defaults:` too, which every task inherits)."
            )
        if self.source is None:
            self.source = "bundled" if self.dataset else "files" if self.train else "hub" if self.path else None
        if self.source not in SOURCES:
            raise DataError(
                f"{where} has source {self.source!r}, but the source must be one of {', '.join(SOURCES)}: "
                "'bundled' with `dataset:`, 'files' with `train:` (and optionally `test:`, "
                "`validation:`), or 'hub' with `path:`."
            )
        required = {"bundled": "dataset", "files": "train", "hub": "path"}[self.source]
        if not getattr(self, required):
            raise DataError(f"{where} has source '{self.source}' but no `{required}:` key: add it.")

    def _check_text(self, where: str) -> None:
        """``text:`` is one column name or a pair of them (normalized to a list)."""
        if isinstance(self.text, list | tuple):
            if len(self.text) != 2 or not all(isinstance(c, str) for c in self.text):
                raise DataError(
                    f"{where}: `text:` must be one column name or a list of exactly two (a text "
                    f"pair), got {self.text!r}."
                )
            self.text = list(self.text)
        elif not isinstance(self.text, str):
            raise DataError(f"{where}: `text:` must be a column name, got {self.text!r}.")

    def _check_sizes(self, where: str) -> None:
        """The ``max_*`` caps and the carving fractions."""
        for key in ("max_train", "max_validation", "max_test"):
            cap = getattr(self, key)
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
                raise DataError(
                    f"{where}: `{key}: {cap!r}` is not a positive integer. Give the largest number "
                    "of examples to keep, or null for no cap."
                )
        for key in ("test_fraction", "validation_fraction"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise DataError(f"{where}: `{key}: {value!r}` must be a number strictly between 0 and 1.")

    def _check_key_shapes(self, where: str) -> None:
        """``format:``, ``split_names:``, ``labels:`` and ``label_names:``."""
        if self.format is not None and self.format not in FILE_FORMATS:
            raise DataError(f"{where}: `format: {self.format}` is not one of {', '.join(FILE_FORMATS)}.")
        if self.split_names is not None and (
            not isinstance(self.split_names, dict) or not set(self.split_names) <= set(SPLITS)
        ):
            raise DataError(
                f"{where}: `split_names:` must map some of {', '.join(SPLITS)} to the hub's split "
                f"names, got {self.split_names!r}."
            )
        if self.labels is not None and (not isinstance(self.labels, list) or len(self.labels) < 2):
            raise DataError(f"{where}: `labels:` must be a list of at least two label values, got {self.labels!r}.")
        if self.label_names is not None and not isinstance(self.label_names, list):
            raise DataError(f"{where}: `label_names:` must be a list of names, got {self.label_names!r}.")


TASK_KEYS = tuple(f.name for f in dataclasses.fields(TaskSpec))


@dataclass
class SequenceConfig:
    """A named sequence of tasks, with the defaults a run uses unless the command line overrides.

    ``training`` is passed through untouched for the training loop. ``orders_file`` is the
    ``<config stem>.orders.yaml`` (or ``.orders.txt``) file beside the config, if there is one.
    """

    name: str
    description: str = ""
    encoder: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    tasks: list[TaskSpec] = field(default_factory=list)
    data_root: Path | None = None
    orders_file: Path | None = None
    scenario: str = DEFAULT_SCENARIO  # task | domain | class: whether the task id is given at test time

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise DataError(
                f"Sequence '{self.name}' has `scenario: {_described(self.scenario)}`; it must be one of "
                f"{', '.join(SCENARIOS)} (task-, domain- or class-incremental; see docs/methods.md, Scenarios)."
            )
        if not self.tasks:
            raise DataError(f"Sequence '{self.name}' has no tasks: list at least one under `tasks:`.")
        seen: set[str] = set()
        for spec in self.tasks:
            if spec.name in seen:
                raise DataError(
                    f"Sequence '{self.name}' has two tasks named '{spec.name}': task names identify "
                    "tasks in checkpoints and results, so give each task a distinct `name:`."
                )
            seen.add(spec.name)


SEQUENCE_KEYS = ("name", "description", "encoder", "scenario", "base", "training", "data_root", "defaults", "tasks")


def _described(value: Any) -> str:
    """``value`` for a message: its repr when short, else its type (an alias-built value may be huge)."""
    if isinstance(value, str | int | float | bool) or value is None:
        text = repr(value)
        return text if len(text) <= 80 else f"{text[:77]}..."
    return f"a {type(value).__name__}"


def _unknown_key_error(key: Any, valid: tuple[str, ...], where: str) -> DataError:
    key = str(key) if isinstance(key, str | int | float | bool) or key is None else _described(key)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return DataError(f"{where} has an unknown key '{key}'.{hint} Valid keys: {', '.join(valid)}.")


def task_spec_from_dict(entry: Any, defaults: dict[str, Any] | None = None, where: str = "A task") -> TaskSpec:
    """Build a TaskSpec from a config mapping, with ``defaults`` filling keys the entry omits."""
    if not isinstance(entry, dict):
        raise DataError(f"{where} is {entry!r}, but each task must be a mapping with at least `name:`.")
    merged = {**(defaults or {}), **entry}
    for key in merged:
        if key not in TASK_KEYS:
            raise _unknown_key_error(key, TASK_KEYS, f"{where} ({entry.get('name', 'unnamed')})")
    if "name" not in entry:
        raise DataError(f"{where} has no `name:` key: give every task a distinct name.")
    return TaskSpec(**merged)


def resolve_data_root(config_path: Path | None, declared: str | None, override: str | os.PathLike | None) -> Path:
    """Choose the directory that relative file paths in a config are resolved against.

    First match wins: ``override`` (the CLI's ``--data-root``), the ``CTR_DATA_ROOT`` environment
    variable, the config's ``data_root:`` key (itself relative to the config file's directory),
    else the current working directory.
    """
    if override is not None:
        return Path(override).expanduser().resolve()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser().resolve()
    if declared is not None:
        base = config_path.parent if config_path is not None else Path.cwd()
        return (base / Path(declared).expanduser()).resolve()
    return Path.cwd()


def _with_resolved_paths(spec: TaskSpec, root: Path) -> TaskSpec:
    paths = {}
    for split in SPLITS:
        value = getattr(spec, split)
        if value is not None:
            path = Path(value).expanduser()
            paths[split] = str(path if path.is_absolute() else root / path)
    return dataclasses.replace(spec, **paths)


DEFAULT_SEQUENCE = "hl5_products"  # the embedded default: five product-review domains, bundled data


def shipped_configs_dir() -> Path:
    """The folder of the sequence configs that ship with the package.

    Installed from a wheel they are package data (``ctr_plugin/data_configs/``); in a checkout
    (or an editable install) they are the checkout's ``data_configs/``.
    """
    installed = Path(__file__).resolve().parents[1] / "data_configs"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "data_configs"


def is_package_data(path: str | os.PathLike) -> bool:
    """Whether ``path`` is one of the configs inside an installed package (not a checkout's),
    where nothing should be written beside it."""
    return Path(path).resolve().parent == Path(__file__).resolve().parents[1] / "data_configs"


def shipped_sequences() -> list[str]:
    """Names of the shipped sequence configs (not their ``.orders`` or ``.tuned`` companions)."""
    return sorted(p.stem for p in shipped_configs_dir().glob("*.yaml") if "." not in p.stem)


def resolve_config(name_or_path: str | os.PathLike, kind: str = "sequence") -> Path:
    """The file a ``--config`` (or ``--tuned``) value names: an existing path as given, else a
    shipped config by name (``hl5_products``, ``hl5_products.yaml``; with ``kind="tuned"``,
    ``hl5_products`` names ``hl5_products.tuned.yaml``). DataError if it is neither."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    name = str(name_or_path)
    suffix = ".tuned.yaml" if kind == "tuned" else ".yaml"
    if "/" not in name and os.sep not in name:
        shipped = shipped_configs_dir() / (name if name.endswith((".yaml", ".yml")) else name + suffix)
        if shipped.is_file():
            return shipped
    what = "tuned-options file" if kind == "tuned" else "sequence config"
    raise DataError(
        f"The {what} '{name_or_path}' does not exist. Check the path, or name a shipped sequence: "
        f"{', '.join(shipped_sequences())} (in {shipped_configs_dir()})."
    )


def load_sequence_config(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> SequenceConfig:
    """Read a YAML sequence config, given by path or by the name of a shipped one
    (see :func:`resolve_config`); relative file paths become absolute (see resolve_data_root).

    Raises DataError for a missing or malformed file, unknown keys, and invalid task options.
    """
    path = resolve_config(path)
    raw = load_yaml_file(path, "sequence config")
    where = f"The sequence config '{path}'"
    if not isinstance(raw, dict):
        raise DataError(f"{where} must be a YAML mapping with a `tasks:` list, but it holds {type(raw).__name__}.")
    base_path = None
    if raw.get("base") is not None:  # another sequence, whose keys this one overrides (one level)
        beside = path.parent / str(raw["base"])  # a file beside this one, else a path or a shipped name
        base_path = beside if beside.is_file() else resolve_config(str(raw["base"]))
        base = load_yaml_file(base_path, "sequence config")
        if not isinstance(base, dict) or base.get("base") is not None:
            raise DataError(f"{where}: `base: {raw['base']}` must name a sequence config that has no `base:` itself.")
        raw = base | {k: v for k, v in raw.items() if k != "base"}
    for key in raw:
        if key not in SEQUENCE_KEYS:
            raise _unknown_key_error(str(key), SEQUENCE_KEYS, where)
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise DataError(f"{where} needs a non-empty `tasks:` list of task mappings.")
    defaults = raw.get("defaults") or {}
    training = raw.get("training") or {}
    for key, value in (("defaults", defaults), ("training", training)):
        if not isinstance(value, dict):
            raise DataError(f"{where}: `{key}:` must be a mapping, got {value!r}.")
    if "name" in defaults:
        raise DataError(f"{where}: `defaults:` cannot set `name:` (task names must be distinct).")
    for key in ("name", "description", "encoder", "data_root"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise DataError(
                f"{where}: `{key}:` must be a string, got {_described(raw[key])}. Quote it in the YAML "
                f"(`{key}: '...'`) if it is meant as written."
            )
    root = resolve_data_root(path, raw.get("data_root"), data_root)
    specs = [
        _with_resolved_paths(task_spec_from_dict(entry, defaults, f"Task #{i + 1} in {path}"), root)
        for i, entry in enumerate(tasks)
    ]
    stems = [p for p in (path, base_path) if p is not None]  # its own orders, else its base's
    orders = [p.with_name(f"{p.stem}.orders{ext}") for p in stems for ext in (".yaml", ".yml", ".txt")]
    return SequenceConfig(
        name=str(raw.get("name") or path.stem),
        description=str(raw.get("description") or ""),
        encoder=raw.get("encoder"),
        scenario=raw.get("scenario") or DEFAULT_SCENARIO,
        training=training,
        tasks=specs,
        data_root=root,
        orders_file=next((p for p in orders if p.is_file()), None),
    )


def sequence_from_names(names: list[str], defaults: dict[str, Any] | None = None) -> SequenceConfig:
    """Build a sequence from the CLI's ``--datasets a b c``, one task per name, in that order.

    Each name is a bundled data set (see BUNDLED_DATASETS), else an existing local csv/tsv/json/
    jsonl file (split into train/validation/test automatically; task named after the file), else
    a hub data set name with columns ``text`` and ``label``. ``defaults`` are task options
    (caps, fractions, ...) applied to every task.
    """
    from ctr_plugin.data.bundled import BUNDLED_DATASETS

    specs = []
    for name in names:
        file = Path(name).expanduser()
        if name in BUNDLED_DATASETS:
            entry = {"name": name, "source": "bundled", "dataset": name}
        elif file.is_file():
            entry = {"name": file.stem, "source": "files", "train": str(file.resolve())}
        elif file.suffix.lstrip(".") in FILE_FORMATS or name.startswith((".", "/", "~")):
            raise DataError(
                f"'{name}' looks like a file path, but there is no such file. Check the path; for a "
                f"bundled data set use one of: {', '.join(BUNDLED_DATASETS)}."
            )
        else:
            entry = {"name": name.replace("/", "_"), "source": "hub", "path": name}
        specs.append(task_spec_from_dict(entry, defaults, f"Data set '{name}'"))
    return SequenceConfig(name="+".join(s.name for s in specs), tasks=specs)


def load_orders(path: str | os.PathLike, num_tasks: int | None = None) -> list[list[int]]:
    """Read task orders: each a permutation of ``range(n)`` giving the order tasks are learned.

    The file is YAML (a list of lists, or a mapping with an ``orders:`` list) or plain text with
    one permutation per line (integers separated by spaces or commas; ``#`` starts a comment).
    All orders must have the same length, equal to ``num_tasks`` when given.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The task-order file '{path}' does not exist. Check the path.")
    if path.suffix in (".yaml", ".yml"):
        raw = load_yaml_file(path, "task-order file")
        if isinstance(raw, dict):
            raw = raw.get("orders")
    else:
        text = read_text(path, "task-order file")
        raw = []
        for line in text.splitlines():
            line = line.split("#", 1)[0].replace(",", " ").strip()
            if line:
                try:
                    raw.append([int(tok) for tok in line.split()])
                except ValueError as exc:
                    raise DataError(f"The task-order file '{path}' has a non-integer in line '{line}'.") from exc
    if not isinstance(raw, list) or not raw:
        raise DataError(
            f"The task-order file '{path}' holds no orders: write one permutation per line, or a YAML list of lists."
        )
    n = num_tasks if num_tasks is not None else len(raw[0]) if isinstance(raw[0], list) else 0
    for i, order in enumerate(raw):
        is_ints = isinstance(order, list) and all(type(x) is int for x in order)
        if not is_ints or sorted(order) != list(range(n)):
            raise DataError(
                f"Order #{i + 1} in '{path}' is {order!r}, which is not a permutation of 0..{n - 1} "
                f"(each of the {n} task indices exactly once)."
            )
    return [list(order) for order in raw]


def sequence_orders(sequence: SequenceConfig, flag: str) -> list[list[int]]:
    """The task orders of ``sequence`` (the orders file beside its config); a DataError naming
    ``flag`` (the option that asked for them) when it has none."""
    if sequence.orders_file is None:
        raise DataError(
            f"{flag} needs the task orders of the sequence {sequence.name!r}, and it has none: "
            "write an orders file beside its config (<config stem>.orders.yaml, "
            "one permutation of the task indices per line). A --datasets sequence has none."
        )
    return load_orders(sequence.orders_file, len(sequence.tasks))
