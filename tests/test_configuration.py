import json

import pytest

from hf_scratchgpt import ScratchGPTConfig
from hf_scratchgpt.model import AUTO_MAP


def test_book_defaults_are_gpt2_124m():
    cfg = ScratchGPTConfig()
    assert (cfg.vocab_size, cfg.context_length, cfg.emb_dim, cfg.n_heads, cfg.n_layers) == (50257, 1024, 768, 12, 12)
    assert cfg.drop_rate == 0.1 and cfg.qkv_bias is False and cfg.tie_word_embeddings is False
    assert cfg.model_type == "scratchgpt"


def test_attribute_map_gives_standard_names():
    cfg = ScratchGPTConfig(emb_dim=64, n_heads=4, n_layers=3, context_length=77)
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers, cfg.max_position_embeddings) == (
        64,
        4,
        3,
        77,
    )
    assert ScratchGPTConfig(num_hidden_layers=5).n_layers == 5


@pytest.mark.parametrize(
    "name, emb, layers, heads",
    [
        ("gpt2-small", 768, 12, 12),
        ("gpt2-medium", 1024, 24, 16),
        ("gpt2-large", 1280, 36, 20),
        ("gpt2-xl", 1600, 48, 25),
    ],
)
def test_gpt2_presets(name, emb, layers, heads):
    cfg = ScratchGPTConfig.from_preset(name)
    assert (cfg.emb_dim, cfg.n_layers, cfg.n_heads, cfg.vocab_size, cfg.context_length) == (
        emb,
        layers,
        heads,
        50257,
        1024,
    )
    assert cfg.eos_token_id == 50256


def test_tiny_preset_and_overrides():
    cfg = ScratchGPTConfig.from_preset("tiny", vocab_size=1000, context_length=64)
    assert cfg.vocab_size == 1000 and cfg.context_length == 64 and cfg.emb_dim % cfg.n_heads == 0
    assert "tiny" in ScratchGPTConfig.preset_names()


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown preset 'gpt5'.*gpt2-small"):
        ScratchGPTConfig.from_preset("gpt5")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"emb_dim": 770, "n_heads": 12}, "emb_dim"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"context_length": -1}, "context_length"),
        ({"emb_dim": 0}, "emb_dim"),
        ({"n_heads": 0}, "n_heads"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_layers": 2.5}, "n_layers"),
        ({"drop_rate": 1.0}, "drop_rate"),
        ({"drop_rate": -0.1}, "drop_rate"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"init_scheme": "xavier"}, "init_scheme"),
        ({"eos_token_id": 50257}, "eos_token_id"),
    ],
)
def test_invalid_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"ScratchGPTConfig\.{field}"):
        ScratchGPTConfig(**kwargs)


def test_divisibility_error_names_both_values():
    with pytest.raises(ValueError, match=r"emb_dim \(770\) must be divisible by n_heads \(12\)"):
        ScratchGPTConfig(emb_dim=770)


def test_json_round_trip_keeps_fields_and_auto_map(tmp_path):
    cfg = ScratchGPTConfig.from_preset("tiny", qkv_bias=True, tie_word_embeddings=True)
    cfg.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == AUTO_MAP and saved["qkv_bias"] is True
    again = ScratchGPTConfig.from_pretrained(tmp_path)
    assert again.to_dict() == cfg.to_dict()


def test_invalid_config_json_is_rejected_on_load(tmp_path):
    cfg = ScratchGPTConfig.from_preset("tiny")
    cfg.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["n_heads"] = 5
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="n_heads"):
        ScratchGPTConfig.from_pretrained(tmp_path)


def test_older_transformers_is_one_clear_import_error():
    """The remote code says which transformers it needs when loaded with an older one (a Hub user's case)."""
    import subprocess
    import sys

    code = "import transformers; transformers.__version__ = '5.17.0'; import hf_scratchgpt"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert "ScratchGPT needs transformers >= 5.24 (found 5.17.0): pip install -U transformers" in run.stderr
