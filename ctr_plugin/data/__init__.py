"""The data layer: task sequences from YAML configs, bundled offline data, local files or the hub.

Typical use::

    from ctr_plugin.data import load_sequence_config, load_tasks
    config = load_sequence_config("hl5_products")  # a shipped config by name, or any path
    tasks = load_tasks(config, seed=0)  # list[TaskData], in config order
"""

from ctr_plugin.data.bundled import BUNDLED_DATASETS
from ctr_plugin.data.config import (
    DEFAULT_SEQUENCE,
    SequenceConfig,
    TaskSpec,
    load_orders,
    load_sequence_config,
    resolve_config,
    sequence_from_names,
    sequence_orders,
    shipped_configs_dir,
    shipped_sequences,
)
from ctr_plugin.data.packages import bundled_model_dir
from ctr_plugin.data.sources import build_task, load_tasks
from ctr_plugin.data.types import Split, TaskData

__all__ = [
    "BUNDLED_DATASETS",
    "DEFAULT_SEQUENCE",
    "SequenceConfig",
    "Split",
    "TaskData",
    "TaskSpec",
    "build_task",
    "bundled_model_dir",
    "load_orders",
    "load_sequence_config",
    "load_tasks",
    "resolve_config",
    "sequence_from_names",
    "sequence_orders",
    "shipped_configs_dir",
    "shipped_sequences",
]
