"""ctr_plugin: CTR continual-learning plugins for a frozen HuggingFace BERT.

    from ctr_plugin import ContinualLearner, ContinualModel, PluginConfig, get_continual_model

    model = get_continual_model("bert-base-uncased", PluginConfig(adapter_size=2000), method="ctr")
    learner = ContinualLearner(model, epochs=3)
    learner.learn_task("laptops", train=[("great screen", "pos"), ("it broke", "neg")])
    learner.save_pretrained("my_checkpoint")            # or learner.push_to_hub("me/my-ctr")
    model = ContinualModel.from_pretrained("my_checkpoint")
    model.predict(["The zoom is superb."], task="laptops")

The public names load on first use (PEP 562, as transformers' top level does), so that importing a
submodule — a console command building its parser — does not import torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ctr_plugin._version import __version__ as __version__

# public name -> the module that defines it
_DEFINED_IN = {
    "ContinualLearner": "ctr_plugin.continual.learner",
    "get_continual_model": "ctr_plugin.continual.learner",
    "METHODS": "ctr_plugin.continual.methods",
    "ContinualMethod": "ctr_plugin.continual.methods",
    "get_method": "ctr_plugin.continual.methods",
    "ContinualResults": "ctr_plugin.continual.progress",
    "ContinualTrainer": "ctr_plugin.continual.trainer",
    "TrainingConfig": "ctr_plugin.continual.training_config",
    "as_task_data": "ctr_plugin.data.python",
    "CTRError": "ctr_plugin.errors",
    "CheckpointError": "ctr_plugin.errors",
    "DataError": "ctr_plugin.errors",
    "TaskError": "ctr_plugin.errors",
    "ContinualModel": "ctr_plugin.modeling.model",
    "Prediction": "ctr_plugin.modeling.prediction",
    "UnprotectedTrainingWarning": "ctr_plugin.modeling.training_rules",
    "continual_pipeline": "ctr_plugin.modeling.pipeline",
    "ContinualTextClassificationPipeline": "ctr_plugin.modeling.pipeline",
    "export_for_tasks": "ctr_plugin.modeling.export",
    "export_onnx": "ctr_plugin.modeling.export",
    "PluginConfig": "ctr_plugin.plugins.config",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from ctr_plugin.continual.learner import ContinualLearner, get_continual_model
    from ctr_plugin.continual.methods import METHODS, ContinualMethod, get_method
    from ctr_plugin.continual.progress import ContinualResults
    from ctr_plugin.continual.trainer import ContinualTrainer
    from ctr_plugin.continual.training_config import TrainingConfig
    from ctr_plugin.data.python import as_task_data
    from ctr_plugin.errors import CheckpointError, CTRError, DataError, TaskError
    from ctr_plugin.modeling.export import export_for_tasks, export_onnx
    from ctr_plugin.modeling.model import ContinualModel
    from ctr_plugin.modeling.pipeline import ContinualTextClassificationPipeline, continual_pipeline
    from ctr_plugin.modeling.prediction import Prediction
    from ctr_plugin.modeling.training_rules import UnprotectedTrainingWarning
    from ctr_plugin.plugins.config import PluginConfig


def __getattr__(name: str):
    if name not in _DEFINED_IN:
        raise AttributeError(f"module 'ctr_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(_DEFINED_IN[name]), name)
    globals()[name] = value  # imported once; later lookups find it in the module's namespace
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DEFINED_IN))


__all__ = [
    "CTRError",
    "CheckpointError",
    "ContinualLearner",
    "ContinualMethod",
    "ContinualModel",
    "ContinualResults",
    "ContinualTextClassificationPipeline",
    "ContinualTrainer",
    "DataError",
    "METHODS",
    "PluginConfig",
    "Prediction",
    "TaskError",
    "TrainingConfig",
    "UnprotectedTrainingWarning",
    "as_task_data",
    "continual_pipeline",
    "export_for_tasks",
    "export_onnx",
    "get_continual_model",
    "get_method",
]
