"""Loss and accuracy of a model on a split: classification ((B, C) logits, (B,) labels) and
next-token prediction ((B, T, V) logits, (B, T) targets) alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sparsetorch.data import Split

EVAL_BATCH = 1000  # examples per evaluation batch, at most
EVAL_TARGETS = 1 << 17  # predictions per evaluation batch, at most (bounds the logits' memory)


def loss_fn(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over every prediction: (B, C) vs (B,) or (B, T, V) vs (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction=reduction)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "acc": fraction of correct predictions}`` in eval mode
    (the model's mode is restored). The default batch holds at most ``EVAL_BATCH`` examples and
    ``EVAL_TARGETS`` predictions (64 sequences of 2048 tokens)."""
    if batch_size is None:
        per_example = max(1, split.y[:1].numel())
        batch_size = max(1, min(EVAL_BATCH, EVAL_TARGETS // per_example))
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for start in range(0, len(split), batch_size):
            x = split.x[start : start + batch_size].to(device)
            y = split.y[start : start + batch_size].to(device)
            logits = model(x)
            total_loss += loss_fn(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
            count += y.numel()
    finally:
        model.train(was_training)
    return {"loss": total_loss / max(count, 1), "acc": correct / max(count, 1)}
