"""Board-probe loss: per-square softmax cross-entropy over 64 squares x 3 classes.

Plain-torch reference and dispatcher; the fused Triton kernel lives in `probe_triton`
(imported here when Triton is installed). x: ``[N, d]``, weight ``[d, 64, 3]``,
bias ``[64, 3]``, labels ``int64 [N, 64]`` (class 0..2, or -100 to ignore).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mothello_fast.errors import KernelError

try:
    from .attention_triton import offsets_fit
    from .probe_triton import TritonProbeLoss, probe_loss_triton  # noqa: F401
    HAVE_TRITON = True
except ImportError:  # the package works without Triton: the reference only
    HAVE_TRITON = False

# Whether backend="auto" runs the fused kernel on CUDA tensors: on an H200 it matches the
# reference (tests/gpu) and is 4.1x (fp32 with tf32) and 6.7x (bf16) the eager reference at
# N = 65536, d = 512 (benchmarks/BENCHMARKS.md).
AUTO_TRITON_ON_CUDA = True

BACKENDS = ("auto", "triton", "reference")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)   # of x, for "auto"


def auto_picks_triton(*, is_cuda: bool, dtype: torch.dtype) -> bool:
    """Whether backend="auto" runs the fused kernel: CUDA tensors of a dtype it takes, unless
    `torch.use_deterministic_algorithms` is on (the kernel sums dW and db with atomics, whose
    order varies from run to run; the reference's products do not)."""
    return (AUTO_TRITON_ON_CUDA and HAVE_TRITON and is_cuda and dtype in TRITON_DTYPES
            and not torch.are_deterministic_algorithms_enabled())


def probe_loss_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over labelled (position, square) pairs, and the number of
    correctly classified squares (``int64`` scalar, no gradient)."""
    logits = torch.einsum("nd,dsc->nsc", x.float(), weight.float()) + bias.float()  # (N, 64, 3)
    labels = labels.long()
    loss = F.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1), ignore_index=-100)
    with torch.no_grad():
        correct = ((logits.argmax(-1) == labels) & (labels != -100)).sum()
    return loss, correct


def check_labels(labels: torch.Tensor) -> None:
    """KernelError unless every label is a class 0..2 or -100 (ignored). It reads the labels
    back from the device, so hot loops check them once (as the probes' `fit` does)."""
    bad = ((labels < 0) & (labels != -100)) | (labels > 2)
    if bool(bad.any()):
        value = int(labels[bad][0])
        raise KernelError(f"label {value}: expected a class 0..2 or -100 (ignored)")


def probe_loss(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor,
               *, backend: str = "auto", validate: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatcher: see `probe_loss_reference` for the contract.

    backend: ``"triton"`` (the fused kernel: CUDA tensors, or CPU tensors when
    ``TRITON_INTERPRET=1``), ``"reference"``, or ``"auto"``: the kernel where
    `auto_picks_triton` and its 32-bit offsets reach every element, the reference otherwise. validate:
    `check_labels` first (the kernel itself would take any other label for class 2); not
    under torch.compile.
    """
    if backend not in BACKENDS:
        raise KernelError(f"backend={backend!r}: expected one of {', '.join(map(repr, BACKENDS))}")
    if validate and not torch.compiler.is_compiling():
        check_labels(labels)
    if backend == "triton" or (backend == "auto"
                               and auto_picks_triton(is_cuda=x.is_cuda, dtype=x.dtype)
                               and offsets_fit(x, labels)):
        if not HAVE_TRITON:
            raise KernelError("backend='triton' needs the triton package (pip install triton)")
        return probe_loss_triton(x, weight, bias, labels)
    return probe_loss_reference(x, weight, bias, labels)
