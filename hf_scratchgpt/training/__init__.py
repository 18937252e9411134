"""Stage 6 and every later training task: one shared run on accelerate, and small task modules.

- `config`: `TrainConfig`, the options every training verb shares, and resuming a saved run.
- `task`: what a task supplies (`Task`, `TaskSetup`).
- `run`: the shared run (folder, accelerator, loaders, optimizer, schedule, checkpoints, final folder).
- `loop`: the training loop and exact evaluation; `checkpoint`, `tracking`: its state and metrics.
- `pretrain`: the causal-LM task and `scratchgpt pretrain`.
- `finetune`: what fine-tuning tasks share (the starting model, train modes, LoRA adapters).
- `classify`: the classification task and `scratchgpt finetune-classifier` (the book's chapter 6).
- `responses`: what the tasks that teach a model to respond share (prompts, end token, samples).
- `instruct`: the instruction task and `scratchgpt finetune-instruct` (the book's chapter 7).
- `preference`: the DPO task and `scratchgpt finetune-dpo` (the book's preference-tuning notebook).
"""

from .checkpoint import TrainState, find_resume_checkpoint, save_checkpoint
from .classify import ClassificationTask, ClassifierConfig, finetune_classifier
from .config import TrainConfig
from .finetune import FinetuneConfig, FinetuneTask, apply_train_mode
from .instruct import InstructConfig, InstructionTask, finetune_instruct
from .loop import LoopParts, LoopSettings, evaluate, lr_lambda, param_groups, train
from .preference import PreferenceConfig, PreferenceTask, finetune_dpo
from .pretrain import CausalLMTask, PretrainConfig, causal_lm_loss, causal_lm_stats, pretrain
from .run import RunInterrupted, run_training
from .task import Task, TaskSetup

__all__ = [
    "ClassificationTask",
    "ClassifierConfig",
    "finetune_classifier",
    "FinetuneConfig",
    "FinetuneTask",
    "apply_train_mode",
    "InstructConfig",
    "InstructionTask",
    "finetune_instruct",
    "TrainState",
    "find_resume_checkpoint",
    "save_checkpoint",
    "TrainConfig",
    "LoopParts",
    "LoopSettings",
    "evaluate",
    "lr_lambda",
    "param_groups",
    "train",
    "PreferenceConfig",
    "PreferenceTask",
    "finetune_dpo",
    "CausalLMTask",
    "PretrainConfig",
    "causal_lm_loss",
    "causal_lm_stats",
    "pretrain",
    "RunInterrupted",
    "run_training",
    "Task",
    "TaskSetup",
]
