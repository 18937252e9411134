"""Stage 3-5 building blocks, with SPEC's test vectors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hf_scratchgpt import (
    GELU,
    CausalAttention,
    FeedForward,
    LayerNorm,
    MultiHeadAttention,
    ScratchGPTForCausalLM,
    SelfAttention,
    TransformerBlock,
    causal_mask,
    masked_softmax_attention,
    simplified_self_attention,
)
from hf_scratchgpt.model.layers_scratchgpt import FEW_ROWS, MIN_ROUTED_WEIGHTS, Linear, decoding_products

from .conftest import tiny_config

BOOK_CFG = {
    "vocab_size": 50,
    "context_length": 16,
    "emb_dim": 24,
    "n_heads": 3,
    "n_layers": 2,
    "drop_rate": 0.0,
    "qkv_bias": False,
}


def test_shiny_context_vector():
    inputs = torch.tensor([[0.34, 0.22, 0.54], [0.53, 0.34, 0.98], [0.29, 0.54, 0.93]])  # Hello, shiny, sun
    context = simplified_self_attention(inputs)
    torch.testing.assert_close(context[1], torch.tensor([0.3990, 0.3854, 0.8610]), atol=1e-3, rtol=0)


def test_seeded_embedding_vector():
    torch.manual_seed(123)
    weight = nn.Embedding(6, 3).weight
    expected = torch.tensor(
        [
            [0.3374, -0.1778, -0.1690],
            [0.9178, 1.5810, 1.3010],
            [1.2753, -0.2010, -0.1606],
            [-0.4015, 0.9666, -1.1481],
            [-1.1589, 0.3255, -0.6315],
            [-2.8400, -0.7849, -1.4096],
        ]
    )
    torch.testing.assert_close(weight.detach(), expected, atol=1e-4, rtol=0)


def test_embeddings_shape_batch_8_by_4_by_256():
    cfg = dict(BOOK_CFG, vocab_size=50257, emb_dim=256, context_length=4, n_heads=4)
    tok, pos = nn.Embedding(cfg["vocab_size"], 256), nn.Embedding(4, 256)
    ids = torch.randint(0, 50257, (8, 4))
    assert (tok(ids) + pos(torch.arange(4))).shape == (8, 4, 256)


def test_self_attention_weights_rows_sum_to_one_and_shapes():
    torch.manual_seed(0)
    x = torch.rand(6, 3)
    sa = SelfAttention(3, 2)
    assert sa(x).shape == (6, 2)
    _, w = masked_softmax_attention(sa.W_query(x), sa.W_key(x), sa.W_value(x))
    torch.testing.assert_close(w.sum(-1), torch.ones(6))


def test_causal_mask_uses_minus_inf_before_softmax_without_nan():
    torch.manual_seed(0)
    q = torch.randn(1, 4, 8)
    _, w = masked_softmax_attention(q, q, q, causal_mask(4, 4))
    assert not torch.isnan(w).any()
    assert torch.equal(w.triu(1), torch.zeros_like(w))  # nothing above the diagonal
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 4))


def test_causal_mask_with_cached_keys_offsets_the_diagonal():
    m = causal_mask(2, 5)  # 3 cached positions, queries at positions 3 and 4
    assert m.tolist() == [[False, False, False, False, True], [False] * 5]


def test_causal_attention_ignores_future_tokens():
    torch.manual_seed(0)
    ca = CausalAttention(3, 2, context_length=6, dropout=0.0).eval()
    x = torch.rand(2, 6, 3)
    y = x.clone()
    y[:, 4:] = torch.rand(2, 2, 3)  # changing the future must not change the past
    torch.testing.assert_close(ca(x)[:, :4], ca(y)[:, :4])
    assert ca(x).shape == (2, 6, 2)


def test_multi_head_attention_checks_head_split():
    try:
        MultiHeadAttention(4, 10, context_length=8, dropout=0.0, num_heads=3)
    except ValueError as err:
        assert "d_out (10) must be divisible by num_heads (3)" in str(err)
    else:
        raise AssertionError("no error for d_out % num_heads != 0")


def test_multi_head_attention_eager_equals_sdpa_and_shape():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 12, context_length=10, dropout=0.0, num_heads=3).eval()
    x = torch.rand(2, 10, 8)
    eager = mha(x)
    assert eager.shape == (2, 10, 12)
    torch.testing.assert_close(mha(x, attn_implementation="sdpa"), eager, atol=1e-6, rtol=0)


def test_layer_norm_mean_zero_variance_one_and_names():
    torch.manual_seed(0)
    ln = LayerNorm(5)
    out = ln(torch.randn(2, 5) * 3 + 1)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
    assert {n for n, _ in ln.named_parameters()} == {"scale", "shift"}


def test_gelu_is_the_tanh_approximation():
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(GELU()(x), nn.functional.gelu(x, approximate="tanh"), atol=1e-6, rtol=0)


def test_feed_forward_and_block_accept_the_book_dict():
    x = torch.rand(2, 4, 24)
    assert FeedForward(BOOK_CFG)(x).shape == (2, 4, 24)
    ff = FeedForward(BOOK_CFG)
    # the book's nn.Linear layers (our subclass adds only a faster product for decoding steps)
    assert [type(m) for m in ff.layers] == [Linear, GELU, Linear] and ff.layers[0].out_features == 96
    assert isinstance(ff.layers[0], nn.Linear) and list(ff.state_dict()) == [
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
    ]
    assert TransformerBlock(BOOK_CFG).eval()(x).shape == (2, 4, 24)


def test_the_model_is_built_from_these_very_classes():
    model = ScratchGPTForCausalLM(tiny_config())
    block = model.transformer.trf_blocks[0]
    assert type(block) is TransformerBlock
    assert type(block.att) is MultiHeadAttention and type(block.ff) is FeedForward
    assert type(block.norm1) is LayerNorm and type(model.transformer.final_norm) is LayerNorm
    assert type(block.ff.layers[1]) is GELU


def test_fused_layer_norm_and_gelu_equal_the_readable_ones():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16) * 4 + 2
    ln = LayerNorm(16)
    with torch.no_grad():
        ln.scale.uniform_(0.5, 1.5)
        ln.shift.uniform_(-1, 1)
    torch.testing.assert_close(ln.fused(x), ln(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(GELU.fused(x), GELU()(x), atol=1e-6, rtol=0)
    ff = FeedForward(BOOK_CFG)
    y = torch.randn(2, 3, 24)
    torch.testing.assert_close(ff(y, fused=True), ff(y), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_decoding_route_equals_the_plain_product(bias):
    torch.manual_seed(0)
    layer = Linear(384, 400, bias=bias)
    for rows in (1, 2, 5, FEW_ROWS):
        x = torch.randn(rows, 1, 384)
        with torch.no_grad(), decoding_products():
            routed = layer(x)
        assert routed.shape == (rows, 1, 400) and routed.is_contiguous()
        torch.testing.assert_close(routed, F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    # outside a decoding step, or with gradients, more rows or another dtype: nn.Linear itself, bit for bit
    x = torch.randn(2, 384)
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    with decoding_products():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))  # gradients on
        with torch.no_grad():
            many = torch.randn(FEW_ROWS + 1, 384)
            assert torch.equal(layer(many), F.linear(many, layer.weight, layer.bias))
            half = layer.to(torch.bfloat16)
            assert torch.equal(half(x.bfloat16()), F.linear(x.bfloat16(), half.weight, half.bias))
    with decoding_products(), decoding_products(False), torch.no_grad():  # nested: the inner setting holds
        assert torch.equal(layer.float()(x), F.linear(x, layer.weight, layer.bias))
    small = Linear(128, 128, bias=bias)  # stays in cache: the plain product is faster there
    with decoding_products(), torch.no_grad():
        assert small.weight.numel() < MIN_ROUTED_WEIGHTS <= layer.weight.numel()
        assert torch.equal(small(x[:, :128]), F.linear(x[:, :128], small.weight, small.bias))
