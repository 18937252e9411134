"""The options of the language-modelling pipeline, as one checked, frozen value both paths take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .splits import TRAIN, VALIDATION, SplitPlan, check_split_args
from .windows import check_window_args


@dataclass(frozen=True)
class LMOptions:
    """How `prepare_lm_datasets` reads, splits and windows a corpus (see its arguments).

    `stride` defaults to `max_length` and is `max_length` whenever `pack` is on (packed rows do not
    overlap). The arguments are checked when the options are made.

    Raises:
        ValueError: A `max_length` or `stride` that is not a positive integer, an unknown `split_by`,
            a `val_fraction` outside [0, 1).
    """

    max_length: int = 256
    stride: int | None = None
    val_fraction: float = 0.1
    split_by: str = "characters"
    seed: int = 123
    text_field: str = "text"
    errors: str = "strict"
    pack: bool = False
    dedup: bool = False
    shifted_labels: bool = False

    def __post_init__(self) -> None:
        if self.stride is None or self.pack:
            object.__setattr__(self, "stride", self.max_length)
        check_window_args(self.max_length, self.stride)
        check_split_args(self.split_by, self.val_fraction)

    @property
    def split_names(self) -> tuple[str, ...]:
        """The splits made: train, and validation unless `val_fraction` is 0."""
        return (TRAIN, VALIDATION) if self.val_fraction else (TRAIN,)

    def split_plan(self, lengths: Callable[[], Sequence[int]]) -> SplitPlan:
        """The `SplitPlan` of a corpus; `lengths()` gives its documents' lengths (asked for by characters only)."""
        return SplitPlan.create(split_by=self.split_by, val_fraction=self.val_fraction, seed=self.seed, lengths=lengths)
