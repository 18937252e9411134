"""Where each document of a corpus goes: the train/validation split rules, written once.

One `SplitPlan` decides for both paths of `prepare_lm_datasets`: the in-memory path hands it each
document whole, the streaming path piece by piece, and the parts come out the same either way.

- By characters (the book): the first `int(train_fraction * total_chars)` characters of the corpus
  train and the rest validates; the cut falls inside one document, which gives a part to each split.
- By documents: each document goes whole to the split that a seeded hash of its index picks.
- No split: every document trains.

In each split the documents follow one another with a separator before every one but the first.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

SPLITS = ("characters", "documents")  # the ways to split (`split_by`)
TRAIN, VALIDATION = "train", "validation"
_NEVER = sys.maxsize  # `validation_start` of a document that is all train


def check_split_args(split_by: str, val_fraction: float) -> None:
    """Reject an unknown `split_by` or a `val_fraction` outside [0, 1).

    Raises:
        ValueError: Names the argument and its value.
    """
    if split_by not in SPLITS:
        raise ValueError(f"split_by must be one of {SPLITS}, got {split_by!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")


def is_validation(index: int, seed: int, val_fraction: float) -> bool:
    """Seeded, order-free choice of the validation documents (by document index)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < val_fraction


@dataclass(frozen=True)
class SplitPlan:
    """Where each document of a corpus goes (documents are counted from 0, empty ones left out).

    `mode` is `"none"` (all train), `"characters"` (the first `cut_char` characters of document
    `cut_doc` and every document before it train, the rest validates) or `"documents"`
    (`is_validation` with `seed` and `val_fraction`).
    """

    mode: str = "none"
    cut_doc: int = 0
    cut_char: int = 0
    seed: int = 0
    val_fraction: float = 0.0

    @classmethod
    def create(
        cls, *, split_by: str, val_fraction: float, seed: int, lengths: Callable[[], Sequence[int]]
    ) -> SplitPlan:
        """The plan for a corpus: no split when `val_fraction` is 0, else by `split_by`.

        Args:
            split_by: `"characters"` or `"documents"`.
            val_fraction: Share of the corpus that validates.
            seed: Seed of a split by documents.
            lengths: Gives every document's length in characters; called for a split by characters only.
        """
        if val_fraction == 0:
            return cls()
        if split_by == "characters":
            return cls.by_characters(np.asarray(lengths(), dtype=np.int64), 1 - val_fraction)
        return cls.by_documents(val_fraction, seed)

    @classmethod
    def by_characters(cls, lengths: np.ndarray, train_fraction: float) -> SplitPlan:
        """The book's split: the first `int(train_fraction * total)` characters train."""
        ends = np.cumsum(lengths)
        split_at = int(train_fraction * int(ends[-1])) if len(ends) else 0
        k = int(np.searchsorted(ends, split_at, side="right"))  # first document not wholly in train
        return cls("characters", cut_doc=k, cut_char=split_at - (int(ends[k - 1]) if k else 0))

    @classmethod
    def by_documents(cls, val_fraction: float, seed: int) -> SplitPlan:
        """Whole documents, each validating with probability `val_fraction` (seeded by its index)."""
        return cls("documents", seed=seed, val_fraction=val_fraction)

    def validation_start(self, index: int) -> int:
        """Character of document `index` where its validation part starts (0: all of it; huge: none)."""
        if self.mode == "characters":
            return _NEVER if index < self.cut_doc else self.cut_char if index == self.cut_doc else 0
        if self.mode == "documents":
            return 0 if is_validation(index, self.seed, self.val_fraction) else _NEVER
        return _NEVER

    def holds(self, index: int, split: str) -> bool:
        """Whether document `index` has a part in `split` (`"train"` or `"validation"`)."""
        start = self.validation_start(index)
        return start > 0 if split == TRAIN else start < _NEVER

    def done(self, index: int, split: str) -> bool:
        """Whether no document from `index` on has a part in `split` (known for train by characters only)."""
        return self.mode == "characters" and split == TRAIN and index >= self.cut_doc and not self.holds(index, split)

    def route(self, index: int, pieces: Iterable[str], split: str) -> Iterator[str]:
        """The text of document `index` (whole, or in consecutive pieces) that goes to `split`.

        Yields the non-empty parts of the pieces; a train part stops reading at the cut.
        """
        start = self.validation_start(index)
        offset = 0
        for piece in pieces:
            cut = min(max(start - offset, 0), len(piece))
            part = piece[:cut] if split == TRAIN else piece[cut:]
            if part:
                yield part
            offset += len(piece)
            if split == TRAIN and offset >= start:
                return

    def separated(self, index: int, split: str) -> bool:
        """Whether document `index` of `split` starts with a separator: all but the split's first do."""
        return self.first_document(split, limit=index) < index

    def first_document(self, split: str, limit: int) -> int:
        """The first document with a part in `split`, looking no further than `limit` (returned if none).

        By documents this hashes indices from 0: about `1 / share` of them for a split holding `share`
        of the documents, asked for that share of them, so about one hash per document on average.
        """
        if self.mode == "characters" and split == VALIDATION:
            return min(self.cut_doc, limit)
        return next((i for i in range(limit) if self.holds(i, split)), limit)

    def text_of(self, index: int, text: str, split: str) -> str:
        """The part of a whole document `text` that goes to `split` (`""`: none)."""
        return "".join(self.route(index, (text,), split))
