"""ctr_plugin: CTR continual-learning plugins for a frozen HuggingFace BERT.

    from ctr_plugin import ContinualLearner, ContinualModel, PluginConfig, get_continual_model

    model = get_continual_model("bert-base-uncased", PluginConfig(adapter_size=2000), method="ctr")
    learner = ContinualLearner(model, epochs=3)
    learner.learn_task("laptops", train=[("great screen", "pos"), ...], validation=[...])
    learner.save_pretrained("my_checkpoint")            # or learner.push_to_hub("me/my-ctr")
    model = ContinualModel.from_pretrained("my_checkpoint")
    model.predict(["The zoom is superb."], task="laptops")

``ContinualTrainer`` (``ctr_plugin.continual.trainer``) trains a task with ``transformers.Trainer``.
"""

from ctr_plugin._version import __version__ as __version__
from ctr_plugin.continual.learner import ContinualLearner, get_continual_model
from ctr_plugin.continual.methods import METHODS, ContinualMethod, get_method
from ctr_plugin.continual.progress import ContinualResults
from ctr_plugin.continual.training_config import TrainingConfig
from ctr_plugin.data.python import as_task_data
from ctr_plugin.errors import CheckpointError, CTRError, DataError, TaskError
from ctr_plugin.modeling.model import ContinualModel
from ctr_plugin.modeling.prediction import Prediction
from ctr_plugin.modeling.training_rules import UnprotectedTrainingWarning
from ctr_plugin.plugins import PluginConfig


def __getattr__(name: str):
    if (
        name == "ContinualTrainer"
    ):  # imports transformers' Trainer (and with it accelerate, datasets ...) only when used
        from ctr_plugin.continual.trainer import ContinualTrainer

        return ContinualTrainer
    raise AttributeError(f"module 'ctr_plugin' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "CTRError",
    "CheckpointError",
    "ContinualLearner",
    "ContinualMethod",
    "ContinualModel",
    "ContinualResults",
    "ContinualTrainer",
    "DataError",
    "PluginConfig",
    "Prediction",
    "TaskError",
    "TrainingConfig",
    "UnprotectedTrainingWarning",
    "as_task_data",
    "get_continual_model",
    "get_method",
]
