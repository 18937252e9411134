"""Pieces of the training loop: schedule, parameter groups, token-weighted evaluation, checkpoint discovery."""

import math

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.training.checkpoint import STATE_FILE, complete_checkpoints, find_resume_checkpoint
from hf_scratchgpt.training.loop import evaluate, lr_lambda, param_groups
from hf_scratchgpt.training.pretrain import CausalLMTask, PretrainConfig, causal_lm_loss, causal_lm_stats

from ..conftest import tiny_config


def test_warmup_then_cosine_to_the_floor():
    f = lr_lambda(warmup_steps=4, total_steps=14, schedule="cosine", min_lr_ratio=0.1)
    assert [round(f(s), 3) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert f(4) == pytest.approx(1.0) and f(9) == pytest.approx(0.55) and f(14) == pytest.approx(0.1)
    const = lr_lambda(0, 10, "constant", 0.1)
    assert {const(s) for s in range(20)} == {1.0}


def test_parameter_groups_decay_only_matrices():
    model = ScratchGPTForCausalLM(tiny_config(qkv_bias=True))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    ids = {id(p) for p in no_decay["params"]}
    assert id(model.transformer.final_norm.scale) in ids and id(model.transformer.trf_blocks[0].att.W_query.bias) in ids


def test_decay_all_is_one_group_of_every_parameter():
    model = ScratchGPTForCausalLM(tiny_config(qkv_bias=True))
    (group,) = param_groups(model, 0.1, decay_all=True)
    assert group["weight_decay"] == 0.1 and [id(p) for p in group["params"]] == [id(p) for p in model.parameters()]


def test_loss_and_stats_take_the_books_shifted_targets():
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    window = torch.randint(0, 97, (2, 11))
    book = {"input_ids": window[:, :-1], "shift_labels": window[:, 1:]}
    loss, n = causal_lm_loss(model, book)
    expected = F.cross_entropy(model(input_ids=window[:, :-1]).logits.flatten(0, 1), window[:, 1:].flatten())
    assert n.item() == 20 and torch.equal(loss, expected)
    stats = causal_lm_stats(model, book)
    sums, counts = stats["loss_sum"], stats["targets"]
    assert counts.tolist() == [10, 10] and (sums.sum() / 20).item() == pytest.approx(expected.item(), rel=1e-6)
    # the same window in transformers' convention has one target fewer
    hf = {"input_ids": window[:, :-1], "labels": window[:, :-1]}
    assert causal_lm_loss(model, hf)[1].item() == 18 and causal_lm_stats(model, hf)["targets"].tolist() == [9, 9]


def test_evaluation_weights_batches_by_tokens():
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    a = {"input_ids": torch.randint(0, 97, (2, 10))}
    a["labels"] = a["input_ids"].clone()
    b = {"input_ids": torch.randint(0, 97, (2, 10))}
    b["labels"] = b["input_ids"].clone()
    b["labels"][:, 3:] = -100  # only 2 x 2 targets
    la, na = causal_lm_loss(model, a)
    lb, nb = causal_lm_loss(model, b)
    assert (na.item(), nb.item()) == (18, 4)
    stats = causal_lm_stats(model, b)
    sums, counts = stats["loss_sum"], stats["targets"]
    assert counts.tolist() == [2, 2] and sums.sum().item() == pytest.approx((lb * nb).item(), rel=1e-5)
    metrics = evaluate(Accelerator(cpu=True), model, [a, b], CausalLMTask(PretrainConfig()), None)
    weighted = metrics["loss"]
    assert weighted == pytest.approx(((la * na + lb * nb) / (na + nb)).item(), rel=1e-6)
    assert weighted != pytest.approx(((la + lb) / 2).item(), rel=1e-3)
    assert metrics["perplexity"] == pytest.approx(torch.tensor(weighted).exp().item(), rel=1e-6)


def test_resume_finds_only_complete_checkpoints(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in [
        ("step-000010", True),
        ("step-000020", True),
        ("step-000030", False),
        (".step-000040.partial", True),
    ]:
        (root / name / "accelerate").mkdir(parents=True)
        if complete:
            (root / name / STATE_FILE).write_text("{}")
    assert [p.name for p in complete_checkpoints(root)] == ["step-000010", "step-000020"]
    assert find_resume_checkpoint("auto", root).name == "step-000020"
    assert find_resume_checkpoint("auto", tmp_path / "none") is None
    assert find_resume_checkpoint(None, root) is None
    with pytest.raises(FileNotFoundError, match="step-000030 is not a complete checkpoint"):
        find_resume_checkpoint(str(root / "step-000030"), root)


def test_the_loop_equals_a_plain_pytorch_loop(tmp_path):
    """Same model, data order and optimizer: accelerate's loop changes nothing in the arithmetic."""
    from torch.utils.data import DataLoader

    from hf_scratchgpt.training.checkpoint import TrainState
    from hf_scratchgpt.training.loop import LoopParts, LoopSettings, train

    torch.manual_seed(0)
    rows = [{"input_ids": torch.randint(0, 97, (16,))} for _ in range(12)]
    for r in rows:
        r["labels"] = r["input_ids"].clone()

    def make():
        torch.manual_seed(1)
        model = ScratchGPTForCausalLM(tiny_config(drop_rate=0.0))
        return model, torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3)

    plain, opt = make()
    plain.train()
    for batch in DataLoader(rows, batch_size=3, shuffle=False):
        loss = plain(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()

    acc = Accelerator(cpu=True)
    model, opt2 = make()
    sched = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0)
    loader = DataLoader(rows, batch_size=3, shuffle=False)
    model, opt2, loader, sched = acc.prepare(model, opt2, loader, sched)

    class NoSample(CausalLMTask):  # the arithmetic only: no tokenizer, no sample
        def sample(self, model):
            return None

    parts = LoopParts(acc, model, opt2, sched, loader, {}, tmp_path / "ckpt", lambda path: None, print_fn=print)
    settings = LoopSettings(max_steps=4, epochs=1, clip_grad=None, eval_every=100)
    train(parts, NoSample(PretrainConfig()), settings, TrainState())
    for (name, a), b in zip(plain.state_dict().items(), acc.unwrap_model(model).state_dict().values()):
        assert torch.equal(a, b), name


def test_stats_count_the_bytes_the_targets_stand_for(verdict_tokenizer):
    from hf_scratchgpt.tokenization import token_byte_lengths
    from hf_scratchgpt.training.pretrain import causal_lm_metrics

    tok = verdict_tokenizer
    texts = ["héllo wörld ☃, a snowman", "The Verdict was long ago 日本"]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(x) for x in ids)
    input_ids = torch.zeros((2, width), dtype=torch.long)
    labels = torch.full((2, width), -100)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(x)] = torch.tensor(x)
    model = ScratchGPTForCausalLM(tiny_config(vocab_size=len(tok)))
    stats = causal_lm_stats(model, {"input_ids": input_ids, "labels": labels}, token_byte_lengths(tok))
    # every token but the first of each text is a target: the bytes of the text after its first token
    expected = [len(t.encode()) - len(tok.decode(x[:1]).encode()) for t, x in zip(texts, ids)]
    assert stats["bytes"].tolist() == expected
    totals = {k: float(v.sum()) for k, v in stats.items()}
    bpb = causal_lm_metrics(totals)["bits_per_byte"]
    assert bpb == pytest.approx(totals["loss_sum"] / math.log(2) / sum(expected))
    assert "bits_per_byte" not in causal_lm_metrics({k: v for k, v in totals.items() if k != "bytes"})
