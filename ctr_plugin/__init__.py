"""ctr_plugin: CTR continual-learning plugins for a frozen HuggingFace BERT.

    from ctr_plugin import ContinualModel
    model = ContinualModel.from_pretrained("runs/hl5_ctr/checkpoint")
    model.predict(["The zoom is superb."], task="canon_g3")
"""

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

from .errors import CheckpointError, CTRError, DataError, TaskError
from .model import ContinualModel, Prediction
from .plugins import PluginConfig

__all__ = ["CTRError", "CheckpointError", "ContinualModel", "DataError", "PluginConfig", "Prediction", "TaskError"]
