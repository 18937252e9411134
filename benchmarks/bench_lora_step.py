"""One LoRA fine-tuning step vs one full fine-tuning step, side by side in one run.

For each model shape, the same ScratchGPT causal LM is trained (AdamW, a fixed random batch) in full
and with the scratch LoRA on every linear layer (rank 16, alpha 16, the book's appendix-E setting).
Steps of the two alternate; the median of the timed steps is reported with the trainable parameter
count and the bytes of AdamW state (exp_avg + exp_avg_sq + step) after a step.

Usage: python -m benchmarks.bench_lora_step [--steps 3] [--quick] [--out DIR]
Results: DIR/lora_step.json (default benchmarks/results/)
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import add_common_args, headline, interleaved, ratio, save, spread
from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.lora import replace_linear_with_lora, trainable_report

HERE = Path(__file__).resolve().parent
SHAPES = {  # name: (preset, batch, sequence length)
    "gpt2-small": ("gpt2-small", 2, 256),
    "tiny": ("tiny", 16, 128),
}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))


def build(preset: str, lora: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(ScratchGPTConfig.from_preset(preset, drop_rate=0.0)).train()
    if lora:
        replace_linear_with_lora(model, rank=16, alpha=16)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    shapes = {"tiny": ("tiny", 2, 32)} if args.quick else SHAPES
    steps = 1 if args.quick else args.steps
    results, headlines = {}, []
    for name, (preset, batch, seq) in shapes.items():
        runs = {variant: build(preset, variant == "lora") for variant in ("full", "lora")}
        vocab = runs["full"][0].config.vocab_size
        ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
        cases = {variant: partial(step, model, optimizer, ids) for variant, (model, optimizer) in runs.items()}
        times = interleaved(cases, rounds=steps, warmup=1)
        row = {}
        for variant, (model, optimizer) in runs.items():
            report = trainable_report(model)
            row[variant] = {
                "step_seconds": statistics.median(times[variant]),
                "trainable_parameters": report["trainable"],
                "total_parameters": report["total"],
                "optimizer_state_mb": optimizer_state_bytes(optimizer) / 2**20,
            }
        row["full_over_lora_time"] = row["full"]["step_seconds"] / row["lora"]["step_seconds"]
        row["full_over_lora_optimizer_state"] = row["full"]["optimizer_state_mb"] / row["lora"]["optimizer_state_mb"]
        results[name] = {"batch": batch, "sequence": seq, **row}
        headlines.append(headline(
            "LoRA", f"{name} {batch}x{seq}: training step time, LoRA (rank 16)", row["lora"]["step_seconds"],
            "full fine-tuning", row["full"]["step_seconds"],
            ratio(times["lora"], times["full"], higher_is_better=False), "s",
        ))  # fmt: skip
        state = row["full_over_lora_optimizer_state"]
        headlines.append(headline(
            "LoRA", f"{name}: AdamW state (MB), LoRA (rank 16)", row["lora"]["optimizer_state_mb"], "full fine-tuning",
            row["full"]["optimizer_state_mb"], spread([state]), "MB",
        ))  # fmt: skip
        for variant in ("full", "lora"):
            r = row[variant]
            print(
                f"{name:>10} {variant:>4}: {r['step_seconds'] * 1000:8.1f} ms/step, "
                f"{r['trainable_parameters']:>12,} trainable, AdamW state {r['optimizer_state_mb']:8.1f} MB"
            )
        print(
            f"{name:>10} full/LoRA: time {row['full_over_lora_time']:.2f}x, "
            f"optimizer state {row['full_over_lora_optimizer_state']:.1f}x"
        )
    print(save("lora_step", args.out, {"shapes": results}, headlines))


if __name__ == "__main__":
    main()
