"""The `scratchgpt` verbs as importable functions, by family (the table is in `hf_scratchgpt.cli`).

- `model`: train-tokenizer, init-model, generate, classify, chat.
- `data`: split-classifier-data, make-instruction-suite.
- `convert`: convert-gpt2, export-gpt2, export-gguf, convert-book.
- `evaluate`: evaluate.
- training verbs live with their tasks in `hf_scratchgpt.training` (pretrain, finetune-classifier).
"""

from .chat import chat
from .classify import classify, split_classifier_data
from .convert import convert_book, convert_gpt2, export_gguf, export_gpt2
from .evaluate import evaluate
from .hub import pull as hub_pull
from .hub import push as hub_push
from .model import generate, init_model, train_tokenizer
from .suite import make_instruction_suite

__all__ = [
    "chat",
    "classify",
    "convert_book",
    "convert_gpt2",
    "evaluate",
    "export_gguf",
    "export_gpt2",
    "generate",
    "hub_pull",
    "hub_push",
    "init_model",
    "make_instruction_suite",
    "split_classifier_data",
    "train_tokenizer",
]
