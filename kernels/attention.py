"""Causal self-attention for short sequences: dispatcher and plain-torch reference.

`attention(q, k, v, ...)` is what the model calls. q, k, v: ``[batch, heads, T, d_head]``
-> ``[batch, heads, T, d_head]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        dropout_p: float = 0.0, causal: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain-torch causal attention, computed in fp32: ``[B, H, T, D]`` -> ``[B, H, T, D]``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q.float() @ k.float().transpose(-2, -1)) * scale  # (B, H, T, T)
    if causal:
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        keep = torch.rand(probs.shape, device=q.device, generator=generator) >= dropout_p
        probs = probs * keep / (1.0 - dropout_p)
    return (probs @ v.float()).to(q.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float = 0.0,
              causal: bool = True, backend: str = "auto") -> torch.Tensor:
    """Causal attention ``[B, H, T, D]`` -> ``[B, H, T, D]``.

    backend: ``"sdpa"`` (torch's scaled_dot_product_attention), ``"reference"``,
    or ``"auto"`` (the fastest available for the inputs' device).
    """
    if backend not in ("auto", "sdpa", "reference"):
        raise ValueError(f"backend={backend!r}: expected 'auto', 'sdpa' or 'reference'")
    if backend == "reference":
        return attention_reference(q, k, v, dropout_p=dropout_p, causal=causal)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
