"""`scratchgpt push` / `pull` / `--push-to-hub` end to end against the Hub-protocol server of `tests/hub_server.py`.

Every command runs in a fresh process pointed at the server (the clients read HF_ENDPOINT at import); the repos
are loaded back in processes where `hf_scratchgpt` cannot be imported, with an empty HF_HOME.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_scratchgpt.cli import main
from hf_scratchgpt.hub import _rewrite_card

from .conftest import SHARED_DATA
from .hub_server import client_env

ALICE = "hf_test_token_alice"
TEXT = "I had always thought Jack Gisburn rather a cheap genius"
PRETRAIN = ["pretrain", "--data", str(SHARED_DATA / "the-verdict.txt"), "--vocab-size", "300", "--preset", "tiny",
            "--context-length", "128", "--emb-dim", "32", "--n-layers", "2", "--n-heads", "2", "--batch-size", "4",
            "--eval-every", "2", "--eval-batches", "1", "--seed", "1"]  # fmt: skip
REPO_FILES = {
    "config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
    "chat_template.jinja", "README.md", "loss.png", "configuration_scratchgpt.py", "modeling_scratchgpt.py",
    "layers_scratchgpt.py", "loss_scratchgpt.py",
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny pretraining run, and a LoRA instruction run on its final folder."""
    root = tmp_path_factory.mktemp("runs")
    assert main([*PRETRAIN, "--max-steps", "4", "--out", str(root / "base")]) == 0
    records = [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("yes", "no", "maybe") * 10]
    (root / "say.json").write_text(json.dumps(records), encoding="utf-8")
    lora = ["finetune-instruct", "--model", str(root / "base" / "final"), "--data", str(root / "say.json"),
            "--train-mode", "lora", "--rank", "2", "--alpha", "4", "--max-steps", "3", "--batch-size", "4",
            "--prompt-style", "phi3", "--generate-test", "false", "--out", str(root / "lora")]  # fmt: skip
    assert main(lora) == 0
    return root


def scratchgpt(server, *args, token=ALICE):
    """`scratchgpt ARGS` in a fresh process talking to `server`; the token may be None (none at all)."""
    proc = subprocess.run(
        [sys.executable, "-m", "hf_scratchgpt", *args],
        env=client_env(server, token),
        capture_output=True,
        text=True,
        timeout=600,
    )
    for secret in (ALICE, "hf_wrong_token_123"):
        assert secret not in proc.stdout + proc.stderr  # the token is never printed
    return proc


FRESH = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_scratchgpt"] = None  # unimportable: only the repo's own code can run
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    repo, text, adapter, revision = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or None
    tok = AutoTokenizer.from_pretrained(repo, trust_remote_code=True, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True, revision=revision).eval()
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter).eval()
    ids = tok(text).input_ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    print(json.dumps({"ids": ids, "logits": logits.tolist(), "max_length": tok.model_max_length,
                      "module": type(model).__module__}))
    """
)


def load_fresh(server, repo, adapter="", revision=""):
    """Ids and logits of TEXT from `repo` (plus `adapter`) loaded from the server in a process without the package."""
    proc = subprocess.run(
        [sys.executable, "-c", FRESH, repo, TEXT, adapter, revision],
        env=client_env(server, ALICE),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[y/N]" not in proc.stdout + proc.stderr  # no remote-code question
    assert "to instantiate a model of type" not in proc.stderr  # nor transformers' config-type warning
    return json.loads(proc.stdout.strip().splitlines()[-1])


def local_logits(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tok(TEXT).input_ids
    with torch.no_grad():
        return ids, model(torch.tensor([ids])).logits[0]


def test_push_a_run_then_load_it_fresh_with_identical_logits_and_push_again_as_a_no_op(runs, hub_server):
    proc = scratchgpt(hub_server, "push", str(runs / "base"), "alice/tiny-base")
    assert proc.returncode == 0, proc.stderr
    assert f"pushed {runs / 'base' / 'final'} -> {hub_server.url}/alice/tiny-base" in proc.stdout
    files = hub_server.files("alice/tiny-base")
    assert REPO_FILES <= set(files), REPO_FILES - set(files)
    config = json.loads(files["config.json"])
    assert set(config["auto_map"]) == {
        "AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification"
    }  # fmt: skip
    assert files["model.safetensors"] == (runs / "base" / "final" / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert 'from_pretrained("alice/tiny-base", trust_remote_code=True)' in card and str(runs) not in card
    assert ModelCard(card).data.license == "apache-2.0"

    fresh = load_fresh(hub_server, "alice/tiny-base")
    ids, logits = local_logits(runs / "base" / "final")
    assert fresh["ids"] == ids and fresh["module"].startswith("transformers_modules.")
    assert torch.equal(torch.tensor(fresh["logits"]), logits)
    assert fresh["max_length"] == 128  # the tokenizer knows the model's context length

    before = len(hub_server.commits("alice/tiny-base"))
    again = scratchgpt(hub_server, "push", str(runs / "base"), "alice/tiny-base")
    assert again.returncode == 0, again.stderr
    assert len(hub_server.commits("alice/tiny-base")) == before  # nothing changed: no commit
    assert "already holds these files: nothing to push, no commit" in again.stdout

    # another folder over it: the repo then holds exactly that folder (no stale file), and --private applies
    lora_final = scratchgpt(hub_server, "push", str(runs / "lora" / "final"), "alice/tiny-base", "--private")
    assert lora_final.returncode == 0, lora_final.stderr
    files = hub_server.files("alice/tiny-base")
    assert set(files) == {p.name for p in (runs / "lora" / "final").iterdir() if p.name != "adapter"} | {
        ".gitattributes"
    }  # eval_results.json of the instruction run is there, loss.png of both; adapter/ (a local base) is not
    assert hub_server.repo("alice/tiny-base").private
    assert str(runs) not in files["README.md"].decode()  # no local absolute path (the base's) is pushed


def test_branches_and_pull(runs, hub_server, tmp_path):
    proc = scratchgpt(hub_server, "push", str(runs / "base" / "final"), "alice/branchy", "--revision", "dev",
                      "--commit-message", "first cut", "--private")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert hub_server.commits("alice/branchy", "dev")[0].title == "first cut"
    assert "model.safetensors" not in hub_server.files("alice/branchy", "main")
    assert hub_server.repo("alice/branchy").private
    assert load_fresh(hub_server, "alice/branchy", revision="dev")["ids"] == local_logits(runs / "base" / "final")[0]

    out = tmp_path / "pulled"
    pulled = scratchgpt(hub_server, "pull", "alice/branchy", str(out), "--revision", "dev")
    assert pulled.returncode == 0, pulled.stderr
    assert "trust_remote_code=True" in pulled.stdout
    names = {p.name for p in out.iterdir()}
    assert REPO_FILES <= names and ".cache" not in names
    assert (out / "model.safetensors").read_bytes() == (runs / "base" / "final" / "model.safetensors").read_bytes()

    again = scratchgpt(hub_server, "pull", "alice/branchy", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.splitlines()) == 1
    missing = scratchgpt(hub_server, "pull", "alice/nothing-here", str(tmp_path / "x"))
    assert missing.returncode == 2 and "alice/nothing-here: no such repo" in missing.stderr
    assert len(missing.stderr.splitlines()) == 1 and not (tmp_path / "x").exists()
    no_branch = scratchgpt(hub_server, "pull", "alice/branchy", str(tmp_path / "y"), "--revision", "nope")
    assert no_branch.returncode == 2 and "the revision 'nope' does not exist" in no_branch.stderr
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y*"))
    bob = scratchgpt(hub_server, "pull", "alice/branchy", str(tmp_path / "z"), token="hf_test_token_bob")
    assert bob.returncode == 2 and "private" in bob.stderr  # a private repo is alice's alone


def test_missing_or_wrong_token_is_one_line_and_creates_nothing(runs, hub_server, tmp_path):
    none = scratchgpt(hub_server, "push", str(runs / "base"), "alice/secret", token=None)
    assert none.returncode == 2 and none.stderr.strip().endswith(
        "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    )
    wrong = scratchgpt(hub_server, "push", str(runs / "base"), "alice/secret", token="hf_wrong_token_123")
    assert wrong.returncode == 2 and "refused the token (401)" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    other = scratchgpt(hub_server, "push", str(runs / "base"), "alice/secret", token="hf_test_token_bob")
    assert other.returncode == 2 and "the token is bob's, who may not write to the namespace 'alice'" in other.stderr
    bad_id = scratchgpt(hub_server, "push", str(runs / "base"), "not a repo")
    assert bad_id.returncode == 2 and "'not a repo' is not a Hub repo id" in bad_id.stderr
    training = scratchgpt(hub_server, *PRETRAIN, "--max-steps", "2", "--out", str(tmp_path / "run"),
                          "--push-to-hub", "alice/secret", token="hf_wrong_token_123")  # fmt: skip
    assert training.returncode == 2 and "refused the token" in training.stderr
    assert not (tmp_path / "run").exists()  # checked before training: nothing written
    training = scratchgpt(hub_server, *PRETRAIN, "--max-steps", "2", "--out", str(tmp_path / "run"),
                          "--push-to-hub", "alice/secret", token="hf_test_token_bob")  # fmt: skip
    assert training.returncode == 2 and "may not write to the namespace 'alice'" in training.stderr
    assert not (tmp_path / "run").exists()
    assert hub_server.repos == {}


def test_lora_run_pushes_a_peft_adapter_repo_that_names_its_base(runs, hub_server, capsys):
    local_base = scratchgpt(hub_server, "push", str(runs / "lora"), "alice/tiny-lora")
    assert (
        local_base.returncode == 2 and "is a local folder" in local_base.stderr and "--base-model" in local_base.stderr
    )
    assert scratchgpt(hub_server, "push", str(runs / "base"), "alice/tiny-base").returncode == 0
    proc = scratchgpt(hub_server, "push", str(runs / "lora"), "alice/tiny-lora", "--base-model", "alice/tiny-base")
    assert proc.returncode == 0, proc.stderr
    files = hub_server.files("alice/tiny-lora")
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert "config.json" not in files
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == "alice/tiny-base"
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == "alice/tiny-base" and card.data.library_name == "peft"
    assert 'PeftModel.from_pretrained(base, "alice/tiny-lora")' in card.text
    assert 'AutoModelForCausalLM.from_pretrained("alice/tiny-base"' in card.text

    early = ["finetune-instruct", "--model", str(runs / "base" / "final"), "--data", str(runs / "say.json"),
             "--train-mode", "lora", "--push-to-hub", "alice/other"]  # fmt: skip
    assert main(early) == 2 and "must name a base model on the Hub" in capsys.readouterr().err

    fresh = load_fresh(hub_server, "alice/tiny-base", adapter="alice/tiny-lora")
    ids, merged = local_logits(runs / "lora" / "final")
    assert fresh["ids"] == ids
    assert torch.allclose(torch.tensor(fresh["logits"]), merged, atol=1e-5)


def test_push_to_hub_after_training_with_a_file_over_10_mb(hub_server, tmp_path):
    big = [*PRETRAIN, "--emb-dim", "256", "--n-layers", "4", "--n-heads", "4", "--max-steps", "2"]
    proc = scratchgpt(hub_server, *big, "--out", str(tmp_path / "big"), "--push-to-hub", "alice/big")
    assert proc.returncode == 0, proc.stderr[-3000:]
    weights = (tmp_path / "big" / "final" / "model.safetensors").read_bytes()
    assert len(weights) >= 10 * 1024 * 1024
    assert hub_server.files("alice/big")["model.safetensors"] == weights
    assert weights in hub_server.lfs_objects.values()  # it took the LFS path
    assert f"pushed -> {hub_server.url}/alice/big" in proc.stdout


def test_card_rewrite_keeps_other_text():
    card = (
        '---\nlibrary_name: peft\n---\n\nbase = AutoModelForCausalLM.from_pretrained("runs/a/final", x)\n'
        'model = PeftModel.from_pretrained(base, "runs/b/final/adapter")\nruns/a/final stays in prose\n'
    )
    out = _rewrite_card(card, "alice/lora", "alice/base", is_adapter=True)
    assert out.startswith("---\nlibrary_name: peft\nbase_model: alice/base\n---\n")
    assert 'from_pretrained("alice/base", x)' in out and 'from_pretrained(base, "alice/lora")' in out
    assert "runs/a/final stays in prose" in out


def test_card_rewrite_shortens_relative_paths_of_this_machine():
    card = "| data | `../shared/data/prefs.json` (sha256 ab) |\nthe style of its data (../../x/data/prefs.json).\n"
    out = _rewrite_card(card, "alice/dpo", None, is_adapter=False)
    assert "../" not in out and out.count("data/prefs.json") == 2
    assert "| data | `data/prefs.json` (sha256 ab) |" in out
