"""Board-probe loss: per-square softmax cross-entropy over 64 squares x 3 classes.

Plain-torch reference and dispatcher. x: ``[N, d]``, weight ``[d, 64, 3]``,
bias ``[64, 3]``, labels ``int64 [N, 64]`` (class 0..2, or -100 to ignore).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def probe_loss_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labelled (position, square) pairs, and the number of
    correctly classified squares (``int64`` scalar, no gradient)."""
    logits = torch.einsum("nd,dsc->nsc", x.float(), weight.float()) + bias.float()  # (N, 64, 3)
    loss = F.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
    with torch.no_grad():
        correct = ((logits.argmax(-1) == labels) & (labels != -100)).sum()
    return loss, correct


def probe_loss(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor,
               *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatcher: see `probe_loss_reference` for the contract."""
    if backend not in ("auto", "reference"):
        raise ValueError(f"backend={backend!r}: expected 'auto' or 'reference'")
    return probe_loss_reference(x, weight, bias, labels)
