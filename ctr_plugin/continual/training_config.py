"""How each task is trained: the options of the loop, shared by the loop and the methods."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ctr_plugin.options import MAX_SEED, Range, check_training_config, option


@dataclass
class TrainingConfig:
    """How each task is trained. Defaults suit the bundled MiniLM on a CPU; see data_configs/.

    Each field declares its help and range (``ctr_plugin.options.option``); the commands make one
    flag of each, and construction checks every value."""

    epochs: int = option(
        3, "training epochs per task; the epoch with the lowest validation loss is kept", Range("int", 1, 10_000)
    )
    batch_size: int = option(16, "training examples per batch", Range("int", 1, 1_000_000))
    eval_batch_size: int = option(64, "examples per batch when validating and testing", Range("int", 1, 1_000_000))
    lr: float = option(
        1e-3,
        "learning rate of the plugins and heads (the paper's 5e-5 is for bert-base over 10-30 epochs)",
        Range("float", 0, 10, low_open=True),
    )
    weight_decay: float = option(
        0.01, "AdamW weight decay (not on biases, norms and HAT's parameters)", Range("float", 0, 10)
    )
    warmup_ratio: float = option(
        0.1, "share of each task's steps over which the learning rate warms up linearly", Range("float", 0, 1)
    )
    max_grad_norm: float = option(1.0, "gradients are clipped to this norm", Range("float", 0, None, low_open=True))
    # The three below default to this package's choices; the CTR authors' code makes the others
    # (data_configs/paper_reference.tuned.yaml sets them, with the file each comes from).
    optimizer: str = option(
        "adamw",
        "'adamw' (PyTorch's AdamW), or 'bertadam' (the CTR reference code's BertAdam: Adam without bias "
        "correction, weight decay added to the update)",
        choices=("adamw", "bertadam"),
    )
    clip: str = option(
        "global",
        "clip the norm of all gradients together ('global') or of each parameter tensor ('per_tensor', as "
        "the reference code's BertAdam does)",
        choices=("global", "per_tensor"),
    )
    lr_schedule: str = option(
        "linear",
        "'linear': warmup, then linear decay to zero; 'linear_squared': that factor applied twice, as the "
        "reference code does (BertAdam's own schedule and the approach's lr rescaling on top)",
        choices=("linear", "linear_squared"),
    )
    max_length: int = option(
        64, "tokens per text; batches pad to their longest text, not to this", Range("int", 1, 1_000_000)
    )
    seed: int = option(0, "seed of the data splits, the initialisation and the batches", Range("int", 0, MAX_SEED))
    progress: bool = option(True, "tqdm progress bars", flag=False)

    def __post_init__(self):
        check_training_config(self)  # types and ranges; numbers given as strings become numbers

    def to_dict(self) -> dict:
        return asdict(self)
