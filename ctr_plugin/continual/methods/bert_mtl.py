"""BERT MTL: the whole encoder fine-tuned on all tasks together (multi-task learning).

Not continual: the upper bound. The loop trains once on the union of the tasks, each example
with its own task id and head (``joint_training``); every row of the accuracy matrix holds the
joint model's scores, so the forgetting rate is 0 by construction and only the final row means
anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctr_plugin.continual.methods.bert_ncl import BertNCL


@dataclass
class BertMTL(BertNCL):
    name = "bert_mtl"
    table_group = "non-continual"
    joint_training = True
