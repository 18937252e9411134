"""Test setup: offline, an isolated HF_HOME, tiny configs and the shared data."""

import os
import tempfile
from pathlib import Path

# Before any Hugging Face import: no network, caches in a throwaway folder.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="scratchgpt-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: the workers share the cores, one torch thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest_plugins = ("tests.judge_server", "tests.hub_server")  # judge_server, closed_port; hub_server

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCRATCHGPT_SHARED_DATA", REPO.parent / "shared" / "data"))
os.environ.setdefault("SCRATCHGPT_GPT2_TOKENIZER", str(SHARED_DATA / "gpt2"))  # GPT-2's files, offline
if (SHARED_DATA / "gpt2").is_dir():  # the book's tiktoken.get_encoding("gpt2") reads the same files, offline
    from hf_scratchgpt.book import use_local_gpt2_files  # noqa: E402

    use_local_gpt2_files(SHARED_DATA / "gpt2", tempfile.mkdtemp(prefix="scratchgpt-tiktoken-"))


def tiny_config(**overrides):
    from hf_scratchgpt import ScratchGPTConfig

    values = dict(vocab_size=97, context_length=32, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.0)
    values.update(overrides)
    return ScratchGPTConfig(**values)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED_DATA} (set SCRATCHGPT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def tiny_lm():
    from hf_scratchgpt import ScratchGPTForCausalLM

    torch.manual_seed(0)
    return ScratchGPTForCausalLM(tiny_config()).eval()


@pytest.fixture(scope="session")
def verdict_tokenizer():
    """A small BPE tokenizer trained on the-verdict (session-wide: training takes a moment)."""
    from hf_scratchgpt.tokenization import train_bpe_tokenizer

    return train_bpe_tokenizer([SHARED_DATA / "the-verdict.txt"], vocab_size=400, model_max_length=32)


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    from hf_scratchgpt.tokenization import load_gpt2_tokenizer

    return load_gpt2_tokenizer(SHARED_DATA / "gpt2")
