"""Causal self-attention for short sequences: dispatcher and plain-torch reference.

`attention(q, k, v, ...)` is what the model calls. q, k, v: ``[batch, heads, T, d_head]``
-> ``[batch, heads, T, d_head]``. The Triton kernels live in `attention_triton` (imported here
when Triton is installed).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mothello_fast.errors import KernelError

try:
    from .attention_triton import (TritonAttention, attention_dropout_mask,  # noqa: F401
                                   attention_triton, offsets_fit)
    from .attention_triton import HEAD_DIMS as TRITON_HEAD_DIMS
    from .attention_triton import MAX_T as TRITON_MAX_T
    HAVE_TRITON = True
except ImportError:  # the package works without Triton: references and SDPA only
    HAVE_TRITON = False

# Whether backend="auto" runs the Triton kernel on CUDA tensors, and for which inputs. On an
# H200 (benchmarks/BENCHMARKS.md) it beats every SDPA backend without dropout at T = 59 (1.04x)
# and T = 125 (1.33x), and loses with dropout at T = 59 (0.82x) and at T = 256 (0.57x): so
# "auto" takes it for dropout-free calls up to AUTO_TRITON_MAX_T (evaluation, probing,
# activation collection) and leaves training with dropout to SDPA.
AUTO_TRITON_ON_CUDA = True
AUTO_TRITON_MAX_T = 128

BACKENDS = ("auto", "triton", "sdpa", "reference")


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                        dropout_p: float = 0.0, causal: bool = True,
                        generator: torch.Generator | None = None,
                        dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Plain-torch causal attention, computed in fp32: ``[B, H, T, D]`` -> ``[B, H, T, D]``.

    dropout_mask: ``bool [B, H, T, T]``, True = kept (e.g. `attention_dropout_mask`, the mask
    a Triton call with the same seed uses); drawn with ``generator`` when not given.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q.float() @ k.float().transpose(-2, -1)) * scale  # (B, H, T, T)
    if causal:
        T = q.shape[-2]
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        keep = dropout_mask
        if keep is None:
            keep = torch.rand(probs.shape, device=q.device, generator=generator) >= dropout_p
        probs = probs * keep / (1.0 - dropout_p)
    return (probs @ v.float()).to(q.dtype)


TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def auto_picks_triton(*, is_cuda: bool, seq_len: int, head_dim: int, dropout_p: float,
                      dtype: torch.dtype = torch.float32) -> bool:
    """Whether backend="auto" runs the Triton kernel for such a call (see AUTO_TRITON_ON_CUDA);
    other calls (float64 among them) go to SDPA."""
    return (AUTO_TRITON_ON_CUDA and HAVE_TRITON and is_cuda and dropout_p == 0.0
            and dtype in TRITON_DTYPES and head_dim in TRITON_HEAD_DIMS
            and 1 <= seq_len <= min(AUTO_TRITON_MAX_T, TRITON_MAX_T))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float = 0.0,
              causal: bool = True, backend: str = "auto") -> torch.Tensor:
    """Causal attention ``[B, H, T, D]`` -> ``[B, H, T, D]``.

    backend: ``"triton"`` (the Triton kernel: CUDA tensors, or CPU tensors when
    ``TRITON_INTERPRET=1``), ``"sdpa"`` (torch's scaled_dot_product_attention),
    ``"reference"``, or ``"auto"``: Triton where it was measured faster (`auto_picks_triton`)
    and its 32-bit offsets reach every element (`offsets_fit`), SDPA otherwise.
    """
    if backend not in BACKENDS:
        raise KernelError(f"backend={backend!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    if backend == "triton" or (backend == "auto" and q.dim() == 4
                               and q.shape == k.shape == v.shape
                               and q.dtype == k.dtype == v.dtype and auto_picks_triton(
            is_cuda=q.is_cuda, seq_len=q.shape[-2], head_dim=q.shape[-1], dropout_p=dropout_p,
            dtype=q.dtype) and offsets_fit(q, k, v)):
        if not HAVE_TRITON:
            raise KernelError("backend='triton' needs the triton package (pip install triton)")
        return attention_triton(q, k, v, dropout_p=dropout_p, causal=causal)
    if backend == "reference":
        return attention_reference(q, k, v, dropout_p=dropout_p, causal=causal)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)

