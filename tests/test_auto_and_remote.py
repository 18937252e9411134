"""Auto classes, save_pretrained folders, and trust_remote_code loading without the package."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    GenerationConfig,
    pipeline,
)

import hf_scratchgpt
from hf_scratchgpt import (
    ScratchGPTConfig,
    ScratchGPTForCausalLM,
    ScratchGPTForSequenceClassification,
    ScratchGPTModel,
)
from hf_scratchgpt.model import REMOTE_CODE_FILES

from .conftest import tiny_config

MODEL_DIR = Path(hf_scratchgpt.model.__file__).parent


@pytest.fixture
def saved_folder(tmp_path, verdict_tokenizer):
    torch.manual_seed(0)
    tok = verdict_tokenizer
    model = ScratchGPTForCausalLM(
        tiny_config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, qkv_bias=True)
    ).eval()
    model.generation_config = GenerationConfig.from_model_config(model.config)
    folder = tmp_path / "tiny-scratchgpt"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model, folder


def test_importing_registers_the_auto_classes():
    assert hf_scratchgpt  # imported above
    assert isinstance(AutoConfig.for_model("scratchgpt"), ScratchGPTConfig)
    cfg = tiny_config()
    assert type(AutoModel.from_config(cfg)) is ScratchGPTModel
    assert type(AutoModelForCausalLM.from_config(cfg)) is ScratchGPTForCausalLM
    assert type(AutoModelForSequenceClassification.from_config(cfg)) is ScratchGPTForSequenceClassification


def test_saved_folder_is_a_complete_remote_code_folder(saved_folder):
    _, folder = saved_folder
    files = set(os.listdir(folder))
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= files
    # every file of the remote-code folder hf_scratchgpt/model/, byte for byte
    assert len(REMOTE_CODE_FILES) == 4 and set(REMOTE_CODE_FILES) <= files
    for name in REMOTE_CODE_FILES:
        assert (folder / name).read_bytes() == (MODEL_DIR / name).read_bytes(), name
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification"}


def test_auto_loading_in_process_gives_identical_logits(saved_folder):
    model, folder = saved_folder
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    again = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(again) is ScratchGPTForCausalLM
    assert torch.equal(again(ids).logits, model(ids).logits)
    base = AutoModel.from_pretrained(folder).eval()
    assert torch.equal(base(ids).last_hidden_state, model.transformer(ids).last_hidden_state)


# Runs where hf_scratchgpt cannot be imported: `sys.modules[name] = None` makes every import fail.
FRESH_SCRIPT = textwrap.dedent(
    """
    import sys, json
    sys.modules["hf_scratchgpt"] = None
    try:
        import hf_scratchgpt  # noqa
        raise SystemExit("hf_scratchgpt is importable: the test would prove nothing")
    except ImportError:
        pass
    import torch
    from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                              pipeline)
    folder, ids_path, out_path = sys.argv[1:4]
    ids = torch.tensor(json.load(open(ids_path)))
    lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    clf = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3).eval()
    gen = pipeline("text-generation", model=folder, trust_remote_code=True)
    text = gen("I had always", max_new_tokens=8, do_sample=False, return_full_text=False)[0]["generated_text"]
    greedy = lm.generate(ids[:1, :4], max_new_tokens=8, do_sample=False)
    torch.save({"module": type(lm).__module__, "logits": lm(ids).logits, "hidden": base(ids).last_hidden_state,
                "clf": clf(ids).logits, "greedy": greedy, "text": text}, out_path)
    """
)


def test_fresh_interpreter_without_the_package_loads_with_trust_remote_code(saved_folder, tmp_path):
    model, folder = saved_folder
    ids = torch.randint(0, model.config.vocab_size, (2, 9))
    (tmp_path / "ids.json").write_text(json.dumps(ids.tolist()))
    (tmp_path / "fresh.py").write_text(FRESH_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "fresh.py"), str(folder), str(tmp_path / "ids.json"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = torch.load(tmp_path / "out.pt", weights_only=True)
    assert result["module"].startswith("transformers_modules.")  # the folder's own code, not the package
    assert torch.equal(result["logits"], model(ids).logits)
    assert torch.equal(result["hidden"], model.transformer(ids).last_hidden_state)
    assert result["clf"].shape == (2, 3)
    assert torch.equal(result["greedy"], model.generate(ids[:1, :4], max_new_tokens=8, do_sample=False))
    assert isinstance(result["text"], str) and len(result["text"]) > 0


def test_pipeline_in_process(saved_folder, verdict_tokenizer):
    model, folder = saved_folder
    gen = pipeline("text-generation", model=str(folder))
    out = gen("I had always", max_new_tokens=5, do_sample=False, return_full_text=False)[0]["generated_text"]
    ids = verdict_tokenizer("I had always", return_tensors="pt").input_ids
    expected = model.generate(ids, max_new_tokens=5, do_sample=False)[0, ids.shape[1] :]
    assert out == verdict_tokenizer.decode(expected, skip_special_tokens=True)
