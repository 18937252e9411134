"""Checks of the GPU paths that CI (CPU only) cannot run: SDPA, bf16, `torch.compile`, the KV cache.

On one model (6 layers x 384, vocabulary 8,192, dropout off) on `--device` (default cuda), each line
compares a path with its reference and prints the largest difference:

- eager attention vs SDPA (fp32 logits); SDPA vs the compiled model (logits, loss, gradients);
- the fused output-head loss vs the plain loss (value and gradients), in fp32 and under bf16 autocast;
- bf16 autocast logits vs fp32 (relative to the largest logit);
- gradient checkpointing vs none (gradients);
- greedy generation with the KV cache vs without (the tokens).

Usage: python -m benchmarks.gpu_checks [--device cuda]. Exits 1 if a check is out of its tolerance.
"""

from __future__ import annotations

import argparse
import sys

import torch

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM


def _model(device: str, attn: str = "sdpa", fused: bool = True) -> ScratchGPTForCausalLM:
    torch.manual_seed(0)
    config = ScratchGPTConfig(
        vocab_size=8192, context_length=256, emb_dim=384, n_heads=6, n_layers=6, drop_rate=0.0, qkv_bias=True,
        fused_linear_cross_entropy=fused,
    )  # fmt: skip
    return ScratchGPTForCausalLM._from_config(config, attn_implementation=attn).to(device)


def _loss_and_grads(model: torch.nn.Module, batch: torch.Tensor, bf16: bool = False):
    model.zero_grad(set_to_none=True)
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=batch, labels=batch, use_cache=False)
    out.loss.backward()
    grads = {n.removeprefix("_orig_mod."): p.grad.float() for n, p in model.named_parameters()}  # compiled: _orig_mod.
    return out.loss.detach().float(), grads


def _grad_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args(argv)
    device = args.device
    batch = torch.randint(0, 8192, (4, 256), generator=torch.Generator().manual_seed(0)).to(device)
    results: list[tuple[str, float, float]] = []  # (check, largest difference, tolerance)

    sdpa, eager = _model(device), _model(device, "eager")
    with torch.no_grad():
        ref = sdpa(batch).logits
        results.append(("eager vs SDPA logits, fp32", (eager(batch).logits - ref).abs().max().item(), 1e-4))
        with torch.autocast(device, dtype=torch.bfloat16):
            low = sdpa(batch).logits.float()
        results.append(
            ("bf16 autocast vs fp32 logits / max |logit|", ((low - ref).abs().max() / ref.abs().max()).item(), 5e-2)
        )
    loss, grads = _loss_and_grads(sdpa, batch)
    plain_loss, plain_grads = _loss_and_grads(_model(device, fused=False), batch)
    results.append(("fused vs plain loss, fp32", (loss - plain_loss).abs().item(), 1e-5))
    results.append(("fused vs plain loss gradients, fp32", _grad_diff(grads, plain_grads), 1e-5))
    bf_loss, bf_grads = _loss_and_grads(sdpa, batch, bf16=True)
    bf_plain, bf_plain_grads = _loss_and_grads(_model(device, fused=False), batch, bf16=True)
    results.append(("fused vs plain loss, bf16 autocast", (bf_loss - bf_plain).abs().item(), 2e-2))
    compiled = torch.compile(_model(device))
    c_loss, c_grads = _loss_and_grads(compiled, batch)
    results.append(("torch.compile vs eager loss", (c_loss - loss).abs().item(), 1e-4))
    results.append(("torch.compile vs eager gradients", _grad_diff(c_grads, grads), 1e-4))
    checkpointed = _model(device)
    checkpointed.gradient_checkpointing_enable()
    checkpointed.train()
    _, ck_grads = _loss_and_grads(checkpointed, batch)
    results.append(("gradient checkpointing vs none, gradients", _grad_diff(ck_grads, grads), 1e-5))
    sdpa.eval()
    with torch.no_grad():
        prompt = batch[:, :16]
        kwargs = {"max_new_tokens": 100, "do_sample": False, "eos_token_id": None, "pad_token_id": 0}
        cached = sdpa.generate(prompt, attention_mask=torch.ones_like(prompt), use_cache=True, **kwargs)
        uncached = sdpa.generate(prompt, attention_mask=torch.ones_like(prompt), use_cache=False, **kwargs)
    results.append(
        ("greedy tokens with vs without the KV cache (tokens that differ)", (cached != uncached).sum().item(), 0)
    )

    print(f"device: {torch.cuda.get_device_name() if device.startswith('cuda') else device}, torch {torch.__version__}")
    failed = 0
    for name, diff, tol in results:
        ok = diff <= tol
        failed += not ok
        print(f"{'ok ' if ok else 'BAD'} {name}: {diff:.3g} (tolerance {tol:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
