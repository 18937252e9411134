"""Direct Preference Optimization (Rafailov et al., 2023), in the spirit of the book's bonus notebook.

Two small functions are the whole method:

- `sequence_logprobs`: the log-probability a model gives a response, summed (or averaged) over the
  response's tokens only; the prompt and the padding carry the label -100 and count for nothing.
- `dpo_loss`: from the policy's and the frozen reference's log-probabilities of the chosen and the
  rejected response, the loss ``-log sigmoid(beta * ((pc - pr) - (rc - rr)))`` and the implicit
  rewards ``beta * (pc - rc)`` and ``beta * (pr - rr)``.

Summed log-probabilities and beta-scaled rewards are the paper's and TRL's convention
(`trl.DPOTrainer`, loss type `sigmoid`). The book's notebook averages over the response tokens
(`average=True` here) and reports rewards without beta (divide ours by beta to compare).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Each sequence's log-probability of its labelled tokens.

    Args:
        logits: `(b, T, vocab)`; position t scores token t + 1.
        labels: `(b, T)`: the input ids on the response (and its end token), -100 elsewhere.
        average: Divide by the number of labelled tokens (the book) instead of summing (the paper, TRL).

    Returns:
        `(b,)` log-probabilities (float32).
    """
    targets = labels[:, 1:]  # (b, T-1): the token each position predicts
    mask = targets != -100
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (b, T-1, vocab)
    picked = logps.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)  # (b, T-1)
    summed = (picked * mask).sum(-1)
    return summed / mask.sum(-1).clamp_min(1) if average else summed


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair and the implicit rewards of its two responses.

    Args:
        policy_chosen: `(b,)` log-probabilities of the chosen responses under the model being trained.
        policy_rejected: `(b,)` the same for the rejected responses.
        reference_chosen: `(b,)` log-probabilities of the chosen responses under the frozen reference.
        reference_rejected: `(b,)` the same for the rejected responses.
        beta: How far the policy may move from the reference (> 0; smaller moves further).

    Returns:
        `(losses, chosen_rewards, rejected_rewards)`, each `(b,)`; the rewards are detached.
    """
    policy_margin = policy_chosen - policy_rejected  # how much more the policy prefers chosen
    reference_margin = reference_chosen - reference_rejected  # ... and the reference
    losses = -F.logsigmoid(beta * (policy_margin - reference_margin))
    chosen_rewards = beta * (policy_chosen - reference_chosen).detach()
    rejected_rewards = beta * (policy_rejected - reference_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


__all__ = ["dpo_loss", "sequence_logprobs"]
