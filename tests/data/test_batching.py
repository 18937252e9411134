"""Length-grouped batching: every example once per epoch, batches of similar length, a seeded order."""

import pytest
import torch

from hf_scratchgpt.data.batching import LengthGroupedSampler


def _lengths(n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, 60, (n,), generator=g).tolist()


def _batches(sampler, size):
    order = list(sampler)
    return [order[i : i + size] for i in range(0, len(order), size)]


def _padding(lengths, batches):
    """Padding positions over all positions when each batch is padded to its longest row."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded


def test_each_example_at_most_once_and_whole_batches_only():
    lengths = _lengths(1003)
    sampler = LengthGroupedSampler(lengths, batch_size=16, seed=1, group_batches=5)
    order = list(sampler)
    assert len(order) == len(sampler) == 1003 // 16 * 16
    assert len(set(order)) == len(order) and set(order) <= set(range(1003))


def test_batches_pad_far_less_than_random_ones():
    lengths = _lengths()
    grouped = _batches(LengthGroupedSampler(lengths, batch_size=16, seed=1), 16)
    shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(1))[: len(grouped) * 16]
    random_batches = shuffled.view(-1, 16).tolist()
    assert _padding(lengths, grouped) < 0.05 < 0.3 < _padding(lengths, random_batches)
    # the batches come in a random order of lengths, not shortest first
    longest = [max(lengths[i] for i in b) for b in grouped]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_the_order_depends_on_seed_and_epoch_only():
    lengths = _lengths()
    a, b = LengthGroupedSampler(lengths, 8, seed=3), LengthGroupedSampler(lengths, 8, seed=3)
    assert list(a) == list(b) == list(a)  # iterating again repeats the epoch
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(LengthGroupedSampler(lengths, 8, seed=4)) != first


@pytest.mark.parametrize("batch_size, group_batches", [(0, 50), (8, 0)])
def test_bad_sizes_are_refused(batch_size, group_batches):
    with pytest.raises(ValueError, match="batch_size and group_batches must be > 0"):
        LengthGroupedSampler([3, 4], batch_size, seed=0, group_batches=group_batches)
