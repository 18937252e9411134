"""Stage 6: one accelerate training loop (`loop`), pretraining (`pretrain`), checkpoints and metrics."""

from .checkpoint import TrainState, find_resume_checkpoint, save_checkpoint
from .config import PretrainConfig, resolve_config
from .loop import LoopSettings, causal_lm_loss, evaluate, lr_lambda, param_groups, train
from .pretrain import pretrain

__all__ = [
    "TrainState",
    "find_resume_checkpoint",
    "save_checkpoint",
    "PretrainConfig",
    "resolve_config",
    "LoopSettings",
    "causal_lm_loss",
    "evaluate",
    "lr_lambda",
    "param_groups",
    "train",
    "pretrain",
]
