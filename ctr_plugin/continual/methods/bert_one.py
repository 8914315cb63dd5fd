"""BERT ONE: a fresh copy of the encoder fine-tuned per task (one model per task).

The per-task encoders are kept in memory and swapped in before a task is tested
(``SeparateWeightsPerTask``); the checkpoint holds every task's encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.bert_ncl import BertNCL
from ctr_plugin.continual.methods.per_task_weights import SeparateWeightsPerTask


@dataclass
class BertONE(SeparateWeightsPerTask, BertNCL):
    name = "bert_one"
    table_group = "non-continual"
    when_task_unknown = "infer_task"  # one encoder per task: Domain-/Class-IL infer the task (task_inference.py)
