"""Stage 2: every dataset the product trains on, built with `datasets` (load_dataset + cached maps).

- `sources`: files, folders, globs, Hub ids and the built-in offline corpus, as documents.
- `lm`: tokenize -> sliding windows over the whole token stream; splits, streaming, packing,
  mixing, de-duplication, content hashes (with `lm_options`, `splits`, `windows`, `in_memory`,
  `streaming`, `tokenize`).
- `classification`: text/label tables, balancing, 70/10/20 splits, padding collate.
- `instruction`: instruction/chat records, prompt styles, the book's collate, packing.
"""

from .classification import (
    ClassificationCollator,
    balance_by_undersampling,
    label_maps,
    load_classification_table,
    load_sms_spam,
    split_fractions,
    tokenize_classification,
)
from .in_memory import deduplicate_documents, tokenize_documents
from .instruction import (
    InstructionCollator,
    book_batch,
    format_input,
    load_instruction_records,
    pack_examples,
    render,
    split_instructions,
    tokenize_instructions,
)
from .lm import LMDatasets, content_hash, mix_datasets, mixing_probabilities, prepare_lm_datasets
from .sources import builtin_corpus_file, builtin_docstrings_file, load_documents
from .windows import window_starts

__all__ = [
    "ClassificationCollator",
    "balance_by_undersampling",
    "label_maps",
    "load_classification_table",
    "load_sms_spam",
    "split_fractions",
    "tokenize_classification",
    "InstructionCollator",
    "book_batch",
    "format_input",
    "load_instruction_records",
    "pack_examples",
    "render",
    "split_instructions",
    "tokenize_instructions",
    "LMDatasets",
    "content_hash",
    "deduplicate_documents",
    "mix_datasets",
    "mixing_probabilities",
    "prepare_lm_datasets",
    "tokenize_documents",
    "window_starts",
    "builtin_corpus_file",
    "builtin_docstrings_file",
    "load_documents",
]
