"""The `scratchgpt` verbs as importable functions, by family (the table is in `hf_scratchgpt.cli`).

- `model`: train-tokenizer, init-model, generate, classify.
- `data`: split-classifier-data.
- `convert`: convert-gpt2, export-gpt2, convert-book.
- training verbs live with their tasks in `hf_scratchgpt.training` (pretrain, finetune-classifier).
"""

from .classify import classify, split_classifier_data
from .convert import convert_book, convert_gpt2, export_gpt2
from .model import generate, init_model, train_tokenizer

__all__ = [
    "classify",
    "convert_book",
    "convert_gpt2",
    "export_gpt2",
    "generate",
    "init_model",
    "split_classifier_data",
    "train_tokenizer",
]
