"""Chapter 3: every attention class draws the book's weights and gives the book's outputs for the same seed."""

import pytest
import torch
from llms_from_scratch import ch03 as book

from hf_scratchgpt.book import ch03 as ours
from hf_scratchgpt.model import layers_scratchgpt as layers

INPUTS = torch.tensor(  # the book's "Your journey starts with one step" embeddings
    [
        [0.43, 0.15, 0.89],
        [0.55, 0.87, 0.66],
        [0.57, 0.85, 0.64],
        [0.22, 0.58, 0.33],
        [0.77, 0.25, 0.10],
        [0.05, 0.80, 0.55],
    ]
)
BATCH = torch.stack((INPUTS, INPUTS.flip(0)))  # (2, 6, 3)


def _pair(name, *args, seed=123, **kwargs):
    torch.manual_seed(seed)
    theirs = getattr(book, name)(*args, **kwargs)
    torch.manual_seed(seed)
    return getattr(ours, name)(*args, **kwargs), theirs


def test_layers_are_the_packages():
    assert issubclass(ours.SelfAttention_v2, layers.SelfAttention)
    assert ours.CausalAttention is layers.CausalAttention and ours.MultiHeadAttention is layers.MultiHeadAttention


@pytest.mark.parametrize("name", ["SelfAttention_v1", "SelfAttention_v2"])
def test_self_attention(name):
    mine, theirs = _pair(name, 3, 2)
    assert torch.equal(mine(INPUTS), theirs(INPUTS))
    mine.load_state_dict(theirs.state_dict())  # same names, same shapes


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize(
    "name, args",
    [
        ("CausalAttention", (3, 2, 6, 0.5)),
        ("MultiHeadAttentionWrapper", (3, 2, 6, 0.5, 2)),
        ("MultiHeadAttention", (3, 4, 6, 0.5, 2)),
    ],
)
def test_causal_and_multi_head_attention_with_dropout(name, args, qkv_bias):
    mine, theirs = _pair(name, *args, qkv_bias=qkv_bias)
    mine.eval(), theirs.eval()
    assert torch.equal(mine(BATCH), theirs(BATCH))
    mine.train(), theirs.train()
    torch.manual_seed(7)
    expected = theirs(BATCH)
    torch.manual_seed(7)
    assert torch.equal(mine(BATCH), expected)  # the same dropout masks on the attention weights


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_pytorch_multi_head_attention(qkv_bias):
    mine, theirs = _pair("PyTorchMultiHeadAttention", 3, 4, num_heads=2, qkv_bias=qkv_bias)
    assert torch.equal(mine(BATCH), theirs(BATCH))
    assert mine.state_dict().keys() == theirs.state_dict().keys()
    with pytest.raises(ValueError, match="divisible"):
        ours.PyTorchMultiHeadAttention(3, 5, num_heads=2)


def test_the_books_mask_buffer_is_accepted():
    mine, theirs = _pair("MultiHeadAttention", 3, 4, 6, 0.0, 2)
    result = mine.load_state_dict(theirs.state_dict())  # the book's state dict carries `mask`
    assert not result.missing_keys and not result.unexpected_keys
