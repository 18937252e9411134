"""Stage-6 benchmark: training throughput of ScratchGPT vs transformers' GPT2LMHeadModel, same config.

Both models get the same shape (GPT-2 layout: qkv bias, tied head, dropout 0.1, SDPA attention) and
run the same full training step (forward, loss, backward, AdamW step) on the same random batches,
measured interleaved (A, B, A, B, ...) after warm-up; the median step time gives tokens/s. ScratchGPT
trains with its fused output-head loss (`fused_linear_cross_entropy`, what `scratchgpt pretrain` uses)
and is also measured with the plain loss and under bf16 autocast. Model-FLOPs utilisation uses
6 x parameters + attention FLOPs per token against a measured matmul peak (fp32 and bf16) of this machine.

Usage: python benchmarks/bench_train_throughput.py [--layers 4 --emb 256 --heads 4 --context 256 --batch 8]
       python benchmarks/bench_train_throughput.py --vocab 4096 --emb 128 --context 128 --batch 16 --steps 20 --tag tiny
Prints a table and writes benchmarks/results/train_throughput[-TAG].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM

HERE = Path(__file__).resolve().parent


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n matrix product (best of `repeats`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_step(model: torch.nn.Module, batch: torch.Tensor, bf16: bool):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--emb", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tag", default="", help="results go to results/train_throughput[-TAG].json")
    args = parser.parse_args()

    torch.manual_seed(0)
    ours_cfg = ScratchGPTConfig(
        vocab_size=args.vocab,
        context_length=args.context,
        emb_dim=args.emb,
        n_heads=args.heads,
        n_layers=args.layers,
        drop_rate=0.1,
        qkv_bias=True,
        tie_word_embeddings=True,
        fused_linear_cross_entropy=True,
    )
    plain_cfg = ScratchGPTConfig(**{**ours_cfg.to_dict(), "fused_linear_cross_entropy": False})
    gpt2_cfg = GPT2Config(
        vocab_size=args.vocab, n_positions=args.context, n_embd=args.emb, n_head=args.heads, n_layer=args.layers
    )
    ours = lambda cfg: ScratchGPTForCausalLM._from_config(cfg, attn_implementation="sdpa")
    models = {
        "scratchgpt fp32": (ours(ours_cfg), False),
        "gpt2 fp32": (GPT2LMHeadModel._from_config(gpt2_cfg, attn_implementation="sdpa"), False),
        "scratchgpt bf16": (ours(ours_cfg), True),
        "scratchgpt fp32 plain loss": (ours(plain_cfg), False),
    }
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in models.items()}
    assert n_params["scratchgpt fp32"] == n_params["gpt2 fp32"], n_params
    batches = torch.randint(0, args.vocab, (args.rounds * args.steps + 2, args.batch, args.context))
    steps = {name: make_step(m, batches[0], bf16) for name, (m, bf16) in models.items()}
    for step in steps.values():  # warm-up
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():  # interleaved
            for _ in range(args.steps):
                times[name].append(_timed(step))

    tokens = args.batch * args.context
    non_emb = n_params["scratchgpt fp32"] - args.vocab * args.emb - args.context * args.emb
    flops_per_token = (
        6 * (n_params["scratchgpt fp32"] - args.context * args.emb) + 12 * args.layers * args.emb * args.context
    )
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        rate = tokens / median
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        rows[name] = {"median_step_s": median, "tokens_per_s": rate, "mfu": rate * flops_per_token / peak}
    summary = {
        "config": vars(args),
        "parameters": n_params["scratchgpt fp32"],
        "non_embedding_parameters": non_emb,
        "flops_per_token": flops_per_token,
        "matmul_peak_flops": peaks,
        "results": rows,
        "ratio_scratchgpt_vs_gpt2_fp32": rows["scratchgpt fp32"]["tokens_per_s"] / rows["gpt2 fp32"]["tokens_per_s"],
        "ratio_bf16_vs_fp32_scratchgpt": rows["scratchgpt bf16"]["tokens_per_s"]
        / rows["scratchgpt fp32"]["tokens_per_s"],
        "ratio_plain_loss_vs_gpt2_fp32": rows["scratchgpt fp32 plain loss"]["tokens_per_s"]
        / rows["gpt2 fp32"]["tokens_per_s"],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(
        f"{args.layers} layers, emb {args.emb}, {args.heads} heads, context {args.context}, vocab {args.vocab}, "
        f"batch {args.batch}: {summary['parameters']:,} parameters; matmul peak fp32 {peaks['fp32'] / 1e9:.1f} "
        f"GFLOP/s, bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s"
    )
    print(f"{'model':<28}{'step s':>9}{'tokens/s':>11}{'MFU':>8}")
    for name, r in rows.items():
        print(f"{name:<28}{r['median_step_s']:>9.3f}{r['tokens_per_s']:>11,.0f}{r['mfu']:>8.1%}")
    print(
        f"scratchgpt / gpt2 (fp32): {summary['ratio_scratchgpt_vs_gpt2_fp32']:.2f}x "
        f"(plain loss: {summary['ratio_plain_loss_vs_gpt2_fp32']:.2f}x); "
        f"scratchgpt bf16 / fp32: {summary['ratio_bf16_vs_fp32_scratchgpt']:.2f}x"
    )
    out = HERE / "results" / f"train_throughput{'-' + args.tag if args.tag else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
