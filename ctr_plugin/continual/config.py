"""How each task is trained: the options of the loop, shared by the loop and the methods."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ctr_plugin.options import check_training_config


@dataclass
class TrainingConfig:
    """How each task is trained. Defaults suit the bundled MiniLM on a CPU; see data_configs/."""

    epochs: int = 3  # per task; the epoch with the lowest validation loss is kept
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 1e-3  # plugins and heads (the paper's 5e-5 is for bert-base over 10-30 epochs)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_length: int = 64  # tokens; batches pad to their longest text, not to this
    seed: int = 0
    progress: bool = True  # tqdm bars

    def __post_init__(self):
        check_training_config(self)  # types and ranges; numbers given as strings become numbers

    def to_dict(self) -> dict:
        return asdict(self)
