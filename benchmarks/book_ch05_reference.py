"""The book's chapter-5 training loop, run on ScratchGPT: a check that the model reproduces the book's numbers.

It follows the book's procedure step by step — `torch.manual_seed(123)` before the data loaders and
again before the model, `create_dataloader_v1` on a 90/10 character split (batch 2, 256/256), AdamW
lr 4e-4 / weight decay 0.1 on all parameters, 10 epochs, evaluation every 5 steps on 5 batches —
with `ScratchGPTForCausalLM(ScratchGPTConfig.from_preset("gpt2-small", context_length=256,
init_scheme="book"))` in place of the book's `GPTModel`. Seen here (CPU, torch 2.13): every printed
pair equals the book's, from "Ep 1 (Step 000000): Train loss 9.781, Val loss 9.933" to
"Ep 10 (Step 000085): Train loss 0.391, Val loss 6.452". About 7 minutes on 2 CPU cores.

Usage: python benchmarks/book_ch05_reference.py [--shared-data ../shared/data] [--attn eager|sdpa]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.data import create_dataloader_v1
from hf_scratchgpt.tokenization import load_gpt2_tokenizer

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--attn", default="sdpa", choices=["eager", "sdpa"])
    args = parser.parse_args()

    tokenizer = load_gpt2_tokenizer(args.shared_data / "gpt2")
    text = (args.shared_data / "the-verdict.txt").read_text(encoding="utf-8")
    split = int(0.90 * len(text))
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(
        text[:split], batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True, tokenizer=tokenizer
    )
    val_loader = create_dataloader_v1(
        text[split:], batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False, tokenizer=tokenizer
    )
    torch.manual_seed(123)
    model = ScratchGPTForCausalLM(ScratchGPTConfig.from_preset("gpt2-small", context_length=256, init_scheme="book"))
    model.set_attn_implementation(args.attn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)

    def batch_loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=inputs, use_cache=False).logits
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def loader_loss(loader, num_batches: int) -> float:
        losses = [batch_loss(x, y).item() for i, (x, y) in zip(range(num_batches), loader)]
        return sum(losses) / len(losses)

    global_step = -1
    for epoch in range(10):
        model.train()
        for inputs, targets in train_loader:
            optimizer.zero_grad()
            batch_loss(inputs, targets).backward()
            optimizer.step()
            global_step += 1
            if global_step % 5 == 0:
                model.eval()
                with torch.no_grad():
                    train_loss, val_loss = loader_loss(train_loader, 5), loader_loss(val_loader, 5)
                model.train()
                print(
                    f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
