"""Next-token cross-entropy fused with the output head, for training (`fused_linear_cross_entropy`).

The plain path builds the `(tokens, vocab)` logits, their log-softmax, and in the backward pass a
gradient of the same size: several passes over a tensor of 100M floats for a 50k vocabulary. Here
only the positions with a target (not the ignored prompt and padding positions) meet the head, and
the loss and its gradients with respect to the hidden states and the head weight are computed
together in the forward pass, chunk by chunk: logits -> one `exp` -> softmax minus one-hot -> two
matrix products. Nothing of vocabulary size outlives a chunk, and the backward pass only scales
the stored gradients. The result equals `F.cross_entropy(hidden @ weight.T, targets)` up to float
rounding (tested to 1e-5).

Only torch is imported, so a saved folder's remote code can use it.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 2**26  # logits per chunk (256 MiB in float32): large enough for efficient matmuls


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, divisor, ignore_index):  # noqa: D102 (b*T, E), (V, E), (b*T,)
        device = hidden.device.type  # matrix products in the autocast dtype, as the plain head would run them
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        with torch.autocast(device, enabled=False):
            h_all, w = hidden.to(dtype), weight.to(dtype)
            keep_all = targets != ignore_index
            grad_hidden = torch.empty_like(hidden)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float64, device=hidden.device)
            rows = max(1, CHUNK_ELEMENTS // weight.shape[0])
            for start in range(0, hidden.shape[0], rows):
                h, keep = h_all[start : start + rows], keep_all[start : start + rows]
                target = torch.where(keep, targets[start : start + rows], 0)[:, None]  # (c, 1)
                logits = (h @ w.t()).float()  # (c, V)
                picked = logits.gather(1, target).squeeze(1)
                peak = logits.amax(1, keepdim=True)
                logits.sub_(peak).exp_()
                sums = logits.sum(1, keepdim=True)
                total += ((peak + sums.log()).squeeze(1) - picked).mul(keep).sum()
                logits.mul_(keep[:, None] / sums)  # softmax (ignored rows: 0)
                logits.scatter_add_(1, target, -keep[:, None].to(logits.dtype))  # minus the one-hot
                grad_logits = logits.to(dtype)
                grad_hidden[start : start + rows] = grad_logits @ w
                grad_weight += (grad_logits.t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        ctx.divisor = divisor
        return (total / divisor).to(torch.float32)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad_output / ctx.divisor
        return grad_hidden * scale.to(grad_hidden.dtype), grad_weight * scale.to(grad_weight.dtype), None, None, None


def fused_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor | None = None,
    shift_labels: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mean next-token cross-entropy of `hidden @ weight.T`, without materialising the logits.

    Args:
        hidden: `(b, T, E)` final hidden states.
        weight: `(V, E)` output-head weight.
        labels: `(b, T)` unshifted targets (transformers' convention); position t predicts t + 1.
        shift_labels: `(b, T)` targets already shifted (the book's); used instead of `labels`.
        num_items_in_batch: Divisor for gradient accumulation (default: this batch's target count).
        ignore_index: Target value that is not counted.
    """
    if shift_labels is None:
        hidden, shift_labels = hidden[:, :-1], labels[:, 1:]
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = shift_labels.reshape(-1).to(hidden.device)
    keep = targets != ignore_index
    kept = int(keep.sum())
    if 0 < kept < targets.numel():  # only target rows meet the head: masked prompts and padding cost nothing
        rows = keep.nonzero().squeeze(1)
        hidden, targets = hidden.index_select(0, rows), targets.index_select(0, rows)
    if num_items_in_batch is None:
        divisor = kept
    else:
        divisor = float(num_items_in_batch.item() if torch.is_tensor(num_items_in_batch) else num_items_in_batch)
    if divisor == 0:  # no targets: the plain path would give nan; keep the graph and give nan too
        return hidden.sum() * float("nan")
    return _LinearCrossEntropy.apply(hidden, weight, targets, divisor, ignore_index)
