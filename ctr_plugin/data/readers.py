"""Reading a task's raw rows from its source: the bundled pools, local csv / tsv / json / jsonl
files, or the hub (``datasets.load_dataset``). Each reader returns the splits as :class:`Rows`,
unchecked, with where every example came from, so that later checks can name file, row and key."""

from __future__ import annotations

import csv
import difflib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctr_plugin.data.bundled import BUNDLED_DATASETS
from ctr_plugin.data.config import FILE_FORMATS, SPLITS, TaskSpec
from ctr_plugin.data.packages import hub_offline
from ctr_plugin.errors import DataError

SHOWN = 5  # how many offending rows or values an error message names
# One data file is read whole into memory (several times its size as Python objects): larger ones are refused
# unless this environment variable raises the limit (a number of bytes; 0 for no limit).
MAX_DATA_FILE_ENV = "CTR_MAX_DATA_FILE_BYTES"
MAX_DATA_FILE_BYTES = 2 * 1024**3


def max_data_file_bytes() -> int | None:
    """The largest data file read, in bytes (None: no limit): ``$CTR_MAX_DATA_FILE_BYTES``, else 2 GiB."""
    value = os.environ.get(MAX_DATA_FILE_ENV, "").strip()
    if not value:
        return MAX_DATA_FILE_BYTES
    if not value.isdecimal():
        raise DataError(
            f"{MAX_DATA_FILE_ENV}={value!r} is not a number of bytes: set it to the largest data file to read "
            "(e.g. 8000000000), or 0 for no limit."
        )
    return int(value) or None


@dataclass
class Rows:
    """One split as read, before checking: raw values and where each example came from."""

    texts: list[Any]
    labels: list[Any]
    pairs: list[Any] | None
    row_ids: list[str]  # e.g. "line 7", "id 1234": names rows in error messages
    origin: str  # e.g. "the train file '/data/x.csv'": names the split in error messages

    def take(self, keep: Sequence[int]) -> Rows:
        """The examples at indices ``keep``, in that order."""

        def pick(values: list) -> list:
            return [values[i] for i in keep]

        pairs = pick(self.pairs) if self.pairs is not None else None
        return Rows(pick(self.texts), pick(self.labels), pairs, pick(self.row_ids), self.origin)


def shown(items: Sequence[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def read_bundled(spec: TaskSpec) -> tuple[dict[str, Rows], str, None]:
    entry = BUNDLED_DATASETS.get(spec.dataset)
    if entry is None:
        close = difflib.get_close_matches(spec.dataset, list(BUNDLED_DATASETS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise DataError(
            f"Task '{spec.name}': there is no bundled data set named '{spec.dataset}'.{hint} "
            f"Bundled data sets: {', '.join(BUNDLED_DATASETS)}."
        )
    data = entry.build()
    rows = Rows(
        data.texts,
        data.labels,
        data.pairs,
        [f"example {i}" for i in range(len(data.texts))],
        f"the bundled data set '{spec.dataset}'",
    )
    return {"train": rows}, entry.description, None


def read_files(spec: TaskSpec) -> tuple[dict[str, Rows], str, None]:
    raw = {split: _read_file(spec, split, Path(getattr(spec, split))) for split in SPLITS if getattr(spec, split)}
    source = "local files: " + ", ".join(f"{split}={getattr(spec, split)}" for split in raw)
    return raw, source, None


def _read_file(spec: TaskSpec, split: str, path: Path) -> Rows:
    where = f"Task '{spec.name}': the {split} file '{path}'"
    if not path.is_file():
        raise DataError(
            f"{where} does not exist. Check the path; relative paths in a config resolve against "
            "its data root (the CLI's --data-root, else $CTR_DATA_ROOT, else the config's "
            "`data_root:`, else the current directory)."
        )
    fmt = spec.format or {".tsv": "tsv", ".tab": "tsv", ".ndjson": "jsonl"}.get(path.suffix, path.suffix.lstrip("."))
    if fmt not in FILE_FORMATS:
        raise DataError(
            f"{where} has an extension this loader does not read. Use one of {', '.join(FILE_FORMATS)} "
            "files, or set `format:` to the format the file is in."
        )
    limit, size = max_data_file_bytes(), path.stat().st_size
    if limit is not None and size > limit:
        raise DataError(
            f"{where} is {size:,} bytes, more than the {limit:,} bytes one data file may have: it is read whole "
            f"into memory. If this machine has the memory (several times the file's size), raise the limit with "
            f"the environment variable {MAX_DATA_FILE_ENV} (a number of bytes, 0 for none); or cap the data "
            "with a smaller file."
        )
    # utf-8-sig also accepts UTF-8 with a byte-order mark, as spreadsheet programs save it.
    encoding = "utf-8-sig" if spec.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else spec.encoding
    try:
        with path.open(encoding=encoding, newline="") as f:
            if fmt in ("csv", "tsv"):
                records, row_ids, header = _parse_delimited(f, fmt)
                repeated = sorted({name for name in header if name and header.count(name) > 1})
                if repeated:
                    positions = "; ".join(
                        f"'{name}' in columns {[i + 1 for i, h in enumerate(header) if h == name]}"
                        for name in repeated
                    )
                    raise DataError(
                        f"{where} has a header that names a column more than once ({positions}); only the last "
                        "of each would be read, silently. Rename the columns so that every name is unique."
                    )
            else:
                records, row_ids = _parse_json(f.read(), fmt)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{where} is not valid {spec.encoding} text: byte {exc.start} cannot be decoded "
            f"({exc.reason}). Re-save the file as UTF-8, or give its actual encoding with "
            "`encoding:` (for example latin-1 or cp1252)."
        ) from exc
    except LookupError as exc:
        raise DataError(f"{where}: `encoding: {spec.encoding}` is not an encoding Python knows ({exc}).") from exc
    except (csv.Error, ValueError) as exc:
        raise DataError(
            f"{where} cannot be read as {fmt} ({exc}). Check that the file is complete and really "
            f"is {fmt}, or set `format:` to the format it is in."
        ) from exc
    except RecursionError:
        raise DataError(
            f"{where} nests JSON arrays or objects too deeply to be read (thousands of levels). A record is "
            "one object of text and label fields: check that the file is the data it should be."
        ) from None
    if not records:
        raise DataError(f"{where} holds no examples. Add examples, or remove the file from the task.")
    columns = list(dict.fromkeys(key for record in records for key in record if key is not None))
    return _select_columns(
        spec, columns, lambda col: [r.get(col) for r in records], row_ids, f"the {split} file '{path}'"
    )


def _parse_delimited(f, fmt: str) -> tuple[list[dict], list[str], list[str]]:
    # TSV files rarely quote fields, and a stray quote would swallow lines: read them literally.
    quoting = csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL
    reader = csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ",", quoting=quoting)
    records, row_ids = [], []
    for record in reader:
        records.append(record)
        row_ids.append(f"line {reader.line_num}")
    return records, row_ids, list(reader.fieldnames or [])


def _parse_json(text: str, fmt: str) -> tuple[list[dict], list[str]]:
    if fmt == "json":
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                raise ValueError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
            data = None  # several JSON values: JSON Lines in a .json file
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            return data, [f"item {i}" for i in range(len(data))]
        if isinstance(data, dict) and data and all(isinstance(r, dict) for r in data.values()):
            # The ASC layout of CTR's released data: {id: {"sentence", "term", "polarity"}}
            return list(data.values()), [f"id {key}" for key in data]
        if data is not None:
            raise ValueError("expected a list of records, an object mapping ids to records, or JSON Lines")
    records, row_ids = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON on line {number}: {exc.msg}") from exc
            if not isinstance(record, dict):
                raise ValueError(f"line {number} is not a JSON object")
            records.append(record)
            row_ids.append(f"line {number}")
    return records, row_ids


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"an object names the key(s) {repeated} more than once; only the last would be read")
    return dict(pairs)


def read_hub(spec: TaskSpec) -> tuple[dict[str, Rows], str, list[str] | None]:
    import datasets  # slow to import: only hub tasks need it

    described = f"'{spec.path}'" + (f" (config '{spec.config}')" if spec.config else "")
    try:
        loaded = datasets.load_dataset(spec.path, spec.config)
    except Exception as exc:  # the datasets library raises many types: network, not found, config
        why = (
            "HF_HUB_OFFLINE is set, so nothing is downloaded: unset it on a machine with network access"
            if hub_offline()
            else "check the name and config, and that this machine can reach the HuggingFace hub"
        )
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(
            f"Task '{spec.name}': could not load the hub data set {described} "
            f"({type(exc).__name__}: {reason}). To fix: {why}; or save the data set to local "
            "csv/json files and use `source: files` with `train:` and `test:`; or use a bundled data set."
        ) from exc
    if not hasattr(loaded, "keys"):  # a single Dataset rather than a DatasetDict
        loaded = {"train": loaded}
    available = list(loaded.keys())
    wanted = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}
    raw: dict[str, Rows] = {}
    class_order = None
    for split in SPLITS:
        if spec.split_names and split in spec.split_names:
            hub_split = spec.split_names[split]
            if hub_split not in available:
                raise DataError(
                    f"Task '{spec.name}': `split_names` maps {split} to '{hub_split}', but the hub "
                    f"data set {described} has splits: {', '.join(available)}."
                )
        else:
            hub_split = next((s for s in wanted[split] if s in available), None)
            if hub_split is None:
                continue
        ds = loaded[hub_split]
        names = getattr(ds.features.get(spec.label), "names", None)
        if names and class_order is None:  # the first split's (train's) order numbers the classes
            class_order = list(names)
        raw[split] = _select_columns(
            spec,
            list(ds.column_names),
            lambda col, ds=ds: list(ds[col]),
            [f"row {i}" for i in range(len(ds))],
            f"the hub split '{hub_split}' of {described}",
        )
        if names:  # a ClassLabel column: read each split's label ids as its own names
            raw[split].labels = [
                names[y] if isinstance(y, int) and 0 <= y < len(names) else y for y in raw[split].labels
            ]
    if "train" not in raw:
        raise DataError(
            f"Task '{spec.name}': the hub data set {described} has no 'train' split (it has: "
            f"{', '.join(available)}). Map one with `split_names: {{train: <split>}}`."
        )
    return raw, f"HuggingFace hub data set {described}", class_order


def _select_columns(
    spec: TaskSpec, columns: list[str], column: Callable[[str], list], row_ids: list[str], origin: str
) -> Rows:
    text_columns = spec.text if isinstance(spec.text, list) else [spec.text]
    for key, name in [("text", c) for c in text_columns] + [("label", spec.label)]:
        if name not in columns:
            raise DataError(
                f"Task '{spec.name}': {origin} has no column '{name}' (named by `{key}:`). Its "
                f"columns are: {', '.join(map(str, columns)) or 'none'}. Set `{key}:` to the column "
                f"holding the {key}."
            )
    pairs = column(text_columns[1]) if len(text_columns) == 2 else None
    return Rows(column(text_columns[0]), column(spec.label), pairs, row_ids, origin)
