"""Reading the YAML files of a run (sequence configs, task orders, tuned options) safely and within
limits, so that a hostile or mistaken file gets a DataError naming it instead of taking the
machine's time and memory: a size limit, and a ``yaml.SafeLoader`` that counts what aliases repeat
(a "billion laughs": a few hundred bytes of nested aliases standing for billions of values once
anything walks them, ``str()``, JSON or a deep copy), refuses recursive aliases and bounds nesting.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from ctr_plugin.errors import DataError

# The shipped files are a few KB, and their anchors (`&shared`, `<<: *shared`) repeat some hundred nodes.
YAML_MAX_BYTES = 1024**2
YAML_MAX_ALIAS_NODES = 10_000  # nodes that aliases may repeat, all aliases together
YAML_MAX_DEPTH = 100  # nesting of mappings and lists


def read_text(path: Path, what: str, max_bytes: int = YAML_MAX_BYTES) -> str:
    """The UTF-8 text of the ``what`` file ``path``, refused (DataError) beyond ``max_bytes``."""
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"The {what} '{path}' is {size:,} bytes; a {what} is a few KB, and more than {max_bytes:,} bytes are "
            "not read. Check that the path names the file meant."
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"The {what} '{path}' is not UTF-8 text ({exc}). Re-save it as UTF-8.") from exc


def _where(event: Any) -> str:
    mark = event.start_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}"


class YAMLTooLarge(Exception):
    """What the bounded loader raises: the document would be larger than its limits once read."""


@functools.cache
def bounded_yaml_loader() -> type:
    """``yaml.SafeLoader`` that refuses (:class:`YAMLTooLarge`) documents whose aliases would repeat
    more than :data:`YAML_MAX_ALIAS_NODES` nodes in all (a few hundred bytes of nested aliases, a
    "billion laughs", stand for billions of nodes once anything walks them: ``str()``, JSON, a deep
    copy), recursive aliases, and nesting deeper than :data:`YAML_MAX_DEPTH`."""
    import yaml
    from yaml.events import AliasEvent

    class BoundedSafeLoader(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._sizes: dict[int, tuple[Any, int]] = {}  # id(node) -> (node, its size with aliases expanded)
            self._expanded = 0  # nodes composed so far, each alias counted as the size of its node
            self._repeated = 0  # of those, the nodes that aliases repeat
            self._depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(AliasEvent):
                mark = _where(self.peek_event())
                node = super().compose_node(parent, index)
                known = self._sizes.get(id(node))
                if known is None:
                    raise YAMLTooLarge(
                        f"an alias{mark} refers to a node that contains it (a recursive structure): write the "
                        "values out instead"
                    )
                self._expanded += known[1]
                self._repeated += known[1]
                if self._repeated > YAML_MAX_ALIAS_NODES:
                    raise YAMLTooLarge(
                        f"its aliases (`*name`, `<<: *name`) repeat more than {YAML_MAX_ALIAS_NODES:,} nodes by the "
                        f"one{mark} (nested aliases, each repeating the one before, can stand for billions): write "
                        "the values out instead"
                    )
                return node
            self._depth += 1
            if self._depth > YAML_MAX_DEPTH:
                raise YAMLTooLarge(
                    f"it nests lists and mappings more than {YAML_MAX_DEPTH} levels deep{_where(self.peek_event())}"
                )
            start = self._expanded
            node = super().compose_node(parent, index)
            self._depth -= 1
            self._expanded += 1
            self._sizes[id(node)] = (node, self._expanded - start)
            return node

    return BoundedSafeLoader


def load_yaml_file(path: str | os.PathLike, what: str, max_bytes: int = YAML_MAX_BYTES) -> Any:
    """The YAML document in the file ``path``, read safely and within limits: at most ``max_bytes``
    bytes, UTF-8, and the limits of :func:`bounded_yaml_loader` (aliases and merges such as
    ``&shared`` / ``<<: *shared`` are fine while they repeat few nodes). ``what`` names the file in
    messages ("sequence config", "task-order file", "tuned-options file"). Raises DataError."""
    import yaml

    path = Path(path)
    text = read_text(path, what, max_bytes)
    try:
        return yaml.load(text, Loader=bounded_yaml_loader())  # a SafeLoader subclass
    except YAMLTooLarge as exc:
        raise DataError(f"The {what} '{path}' is not read: {exc}.") from None
    except yaml.YAMLError as exc:
        raise DataError(
            f"The {what} '{path}' is not valid YAML ({exc}). Fix the syntax at the position shown."
        ) from exc
