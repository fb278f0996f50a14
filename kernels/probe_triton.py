"""Board-probe loss in Triton: per-square 3-class softmax cross-entropy, its gradients and the
number of correct squares, in one pass over the activations.

x: ``[N, d]`` (fp32, fp16 or bf16), weight ``[d, 64, 3]``, bias ``[64, 3]``, labels
``int [N, 64]`` (class 0..2, or -100 to ignore). One program per block of BLOCK_N rows:

1. logits for class c, ``[BLOCK_N, 64]``, accumulated over d in chunks of BLOCK_D
   (the three classes as three products against ``weight[:, :, c]``);
2. log-sum-exp, loss, argmax and ``g_c = softmax_c - onehot_c`` in registers (the
   ``[N, 64, 3]`` probabilities never reach memory);
3. when gradients are wanted, a second walk over d writes ``dx = sum_c g_c @ w_c^T`` and adds
   ``x^T @ g_c`` into dW and the row sums of ``g_c`` into db (atomics).

Per-program loss sums, label counts and correct counts are summed afterwards (deterministic).
Gradients are left unnormalised; the autograd function scales them by ``grad / count``. The
weight and bias are read in place through their strides (no copies), and all accumulators
share one zeroed buffer, so a call is one memset, the kernel and a few scalar ops.
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch
import triton
import triton.language as tl

from mothello_fast.errors import KernelError

N_SQUARES = 64
N_CLASSES = 3
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"

PROBE_CONFIGS = [triton.Config({"BLOCK_N": n, "BLOCK_D": d}, num_warps=w, num_stages=s)
                 for n, d in [(32, 64), (64, 32), (64, 64), (128, 32), (128, 64)]
                 for w in (4, 8) for s in (2, 3)]


@triton.jit
def _load_w(W, c: tl.constexpr, offs_d, d_ok, swd, sws, swc, dtype: tl.constexpr):
    """``weight[offs_d, :, c]``: ``[BLOCK_D, 64]``, in ``dtype``."""
    offs_s = tl.arange(0, 64)
    w = tl.load(W + c * swc + offs_d[:, None] * swd + offs_s[None, :] * sws, mask=d_ok[:, None],
                other=0.0)
    return w.to(dtype)


@triton.jit(do_not_specialize=["N"])
def _probe_kernel(X, W, B, LABELS, DX, DW, DB, PARTS,
                  N, D, N_PARTS, sxn, swd, sws, swc, sbs, sbc, sln, sdxn, N_BUCKET,
                  GRAD: tl.constexpr, DOT_PRECISION: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = offs_n < N
    offs_s = tl.arange(0, 64)
    dt = X.dtype.element_ty
    acc0 = tl.zeros([BLOCK_N, 64], tl.float32)
    acc1 = tl.zeros([BLOCK_N, 64], tl.float32)
    acc2 = tl.zeros([BLOCK_N, 64], tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        d_ok = offs_d < D
        x = tl.load(X + offs_n[:, None] * sxn + offs_d[None, :],
                    mask=row_ok[:, None] & d_ok[None, :], other=0.0)
        acc0 = tl.dot(x, _load_w(W, 0, offs_d, d_ok, swd, sws, swc, dt), acc0,
                      input_precision=DOT_PRECISION)
        acc1 = tl.dot(x, _load_w(W, 1, offs_d, d_ok, swd, sws, swc, dt), acc1,
                      input_precision=DOT_PRECISION)
        acc2 = tl.dot(x, _load_w(W, 2, offs_d, d_ok, swd, sws, swc, dt), acc2,
                      input_precision=DOT_PRECISION)
    l0 = acc0 + tl.load(B + offs_s * sbs).to(tl.float32)[None, :]
    l1 = acc1 + tl.load(B + offs_s * sbs + sbc).to(tl.float32)[None, :]
    l2 = acc2 + tl.load(B + offs_s * sbs + 2 * sbc).to(tl.float32)[None, :]
    labels = tl.load(LABELS + offs_n[:, None] * sln + offs_s[None, :], mask=row_ok[:, None],
                     other=-100).to(tl.int32)
    labelled = labels != -100
    mx = tl.maximum(tl.maximum(l0, l1), l2)
    e0 = tl.exp(l0 - mx)
    e1 = tl.exp(l1 - mx)
    e2 = tl.exp(l2 - mx)
    total = e0 + e1 + e2
    picked = tl.where(labels == 0, l0, tl.where(labels == 1, l1, l2))
    loss = tl.where(labelled, mx + tl.log(total) - picked, 0.0)
    pred = tl.where((l0 >= l1) & (l0 >= l2), 0, tl.where(l1 >= l2, 1, 2))  # first max, as torch
    n_labelled = tl.sum(tl.sum(labelled.to(tl.int32), 1), 0)
    n_correct = tl.sum(tl.sum((labelled & (pred == labels)).to(tl.int32), 1), 0)
    tl.store(PARTS + pid, tl.sum(tl.sum(loss, 1), 0))
    tl.store(PARTS + N_PARTS + pid, n_labelled.to(tl.float32))  # exact: <= BLOCK_N * 64
    tl.store(PARTS + 2 * N_PARTS + pid, n_correct.to(tl.float32))
    if GRAD:
        inv = 1.0 / total
        g0 = tl.where(labelled, e0 * inv - (labels == 0).to(tl.float32), 0.0)
        g1 = tl.where(labelled, e1 * inv - (labels == 1).to(tl.float32), 0.0)
        g2 = tl.where(labelled, e2 * inv - (labels == 2).to(tl.float32), 0.0)
        tl.atomic_add(DB + offs_s * 3, tl.sum(g0, 0))
        tl.atomic_add(DB + offs_s * 3 + 1, tl.sum(g1, 0))
        tl.atomic_add(DB + offs_s * 3 + 2, tl.sum(g2, 0))
        g0 = g0.to(dt)
        g1 = g1.to(dt)
        g2 = g2.to(dt)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            x = tl.load(X + offs_n[:, None] * sxn + offs_d[None, :],
                        mask=row_ok[:, None] & d_ok[None, :], other=0.0)
            w0 = _load_w(W, 0, offs_d, d_ok, swd, sws, swc, dt)
            w1 = _load_w(W, 1, offs_d, d_ok, swd, sws, swc, dt)
            w2 = _load_w(W, 2, offs_d, d_ok, swd, sws, swc, dt)
            dx = tl.dot(g0, tl.trans(w0), input_precision=DOT_PRECISION)
            dx = tl.dot(g1, tl.trans(w1), dx, input_precision=DOT_PRECISION)
            dx = tl.dot(g2, tl.trans(w2), dx, input_precision=DOT_PRECISION)
            tl.store(DX + offs_n[:, None] * sdxn + offs_d[None, :], dx.to(dt),
                     mask=row_ok[:, None] & d_ok[None, :])
            x_t = tl.trans(x)
            dw_ptr = DW + offs_d[:, None] * 192 + offs_s[None, :] * 3  # DW: fp32 [D, 64, 3]
            dw_ok = d_ok[:, None] & (offs_s[None, :] < 64)
            tl.atomic_add(dw_ptr, tl.dot(x_t, g0, input_precision=DOT_PRECISION), mask=dw_ok)
            tl.atomic_add(dw_ptr + 1, tl.dot(x_t, g1, input_precision=DOT_PRECISION),
                          mask=dw_ok)
            tl.atomic_add(dw_ptr + 2, tl.dot(x_t, g2, input_precision=DOT_PRECISION),
                          mask=dw_ok)


@lru_cache(maxsize=None)
def _autotuned():
    # N_BUCKET (a kernel argument only for this key): a small batch wants smaller row blocks
    return triton.autotune(configs=PROBE_CONFIGS, key=["N_BUCKET", "D", "GRAD", "DOT_PRECISION"],
                           reset_to_zero=["DW", "DB"])(_probe_kernel)


def probe_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  labels: torch.Tensor, *, grad: bool, config: triton.Config | None = None
                  ) -> tuple[torch.Tensor, ...]:
    """Launch the probe kernel. Returns ``(totals, dx, buffer)``: totals ``float64 [3]``
    (loss sum, labelled count, correct count); the unnormalised gradients: dx (x's dtype
    ``[N, d]``, empty when ``grad`` is False) and ``float32`` buffer whose first ``d * 192``
    entries are dW ``[d, 64, 3]`` and next 192 are db ``[64, 3]`` (see `split_buffer`)."""
    N, D = x.shape
    if x.stride(1) != 1:
        x = x.contiguous()
    if labels.stride(1) != 1:
        labels = labels.contiguous()
    n_parts = max(triton.cdiv(N, min(c.kwargs["BLOCK_N"] for c in PROBE_CONFIGS)), 1)
    n_grad = D * 192 + 192 if grad else 0
    buf = torch.zeros(n_grad + 3 * n_parts, dtype=torch.float32, device=x.device)  # one memset
    dw = buf[:D * 192].view(D, 64, 3) if grad else buf[:0]
    db = buf[D * 192:n_grad].view(64, 3) if grad else buf[:0]
    parts = buf[n_grad:].view(3, n_parts)  # loss sums, labelled counts, correct counts
    dx = torch.empty((N, D) if grad else (0, D), dtype=x.dtype, device=x.device)
    args = (x, weight.detach(), bias.detach(), labels, dx, dw, db, parts, N, D, n_parts,
            x.stride(0), *weight.stride(), *bias.stride(), labels.stride(0),
            dx.stride(0) if grad else D, min(triton.next_power_of_2(N), 1 << 16))
    precision = "ieee" if (x.dtype == torch.float32
                           and torch.get_float32_matmul_precision() == "highest") else "tf32"

    def grid(meta):
        return (triton.cdiv(N, meta["BLOCK_N"]),)

    if config is None and INTERPRETING:
        config = PROBE_CONFIGS[0]
    if config is None:
        _autotuned()[grid](*args, GRAD=grad, DOT_PRECISION=precision)
    else:
        _probe_kernel[grid(config.kwargs)](*args, GRAD=grad, DOT_PRECISION=precision,
                                           **config.kwargs, num_warps=config.num_warps,
                                           num_stages=config.num_stages)
    return parts.sum(1, dtype=torch.float64), dx, buf


def split_buffer(buf: torch.Tensor, D: int) -> tuple[torch.Tensor, torch.Tensor]:
    """dW ``float32 [D, 64, 3]`` and db ``float32 [64, 3]`` views of `probe_forward`'s buffer."""
    return buf[:D * 192].view(D, 64, 3), buf[D * 192:D * 192 + 192].view(64, 3)


def _probe_forward_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      labels: torch.Tensor, grad: bool
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return probe_forward(x, weight, bias, labels, grad=grad)


# Opaque to torch.compile (used while compiling; eager calls skip the dispatcher).
_probe_fwd_op = torch.library.custom_op("mothello_fast::probe_loss_fwd", _probe_forward_op,
                                        mutates_args=())


@_probe_fwd_op.register_fake
def _(x, weight, bias, labels, grad):
    N, D = x.shape
    n_parts = max(triton.cdiv(N, min(c.kwargs["BLOCK_N"] for c in PROBE_CONFIGS)), 1)
    return (x.new_empty((3,), dtype=torch.float64), x.new_empty((N, D) if grad else (0, D)),
            x.new_empty(((D * 192 + 192) if grad else 0) + 3 * n_parts, dtype=torch.float32))


class TritonProbeLoss(torch.autograd.Function):
    """``apply(x, weight, bias, labels, grad) -> (loss, correct)`` with the fused kernel: when
    ``grad``, the gradients are computed with the loss and scaled in backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, labels, grad):
        fwd = _probe_fwd_op if torch.compiler.is_compiling() else _probe_forward_op
        totals, dx, buf = fwd(x, weight, bias, labels, grad)
        count = totals[1]
        ctx.save_for_backward(dx, buf, count)
        ctx.dtypes = (weight.dtype, bias.dtype)
        correct = totals[2].long()
        ctx.mark_non_differentiable(correct)
        return (totals[0] / count).float(), correct

    @staticmethod
    def backward(ctx, grad_loss, grad_correct):
        dx, buf, count = ctx.saved_tensors
        dw, db = split_buffer(buf, dx.shape[1])
        scale = grad_loss / count  # float64 scalar: keeps dx's dtype
        return (dx * scale, (dw * scale).to(ctx.dtypes[0]), (db * scale).to(ctx.dtypes[1]),
                None, None)


def check_inputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 labels: torch.Tensor) -> None:
    """Raise KernelError unless the probe inputs fit the kernel."""
    if x.dim() != 2:
        raise KernelError(f"x shape {tuple(x.shape)}: expected [N, d]")
    N, D = x.shape
    if tuple(weight.shape) != (D, N_SQUARES, N_CLASSES):
        raise KernelError(f"weight shape {tuple(weight.shape)}: expected ({D}, 64, 3)")
    if tuple(bias.shape) != (N_SQUARES, N_CLASSES):
        raise KernelError(f"bias shape {tuple(bias.shape)}: expected (64, 3)")
    if tuple(labels.shape) != (N, N_SQUARES) or labels.dtype not in (torch.int64, torch.int32,
                                                                      torch.int16, torch.int8):
        raise KernelError(f"labels {labels.dtype} {tuple(labels.shape)}: expected an integer "
                          f"[{N}, 64] tensor")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise KernelError(f"x dtype {x.dtype}: expected float32, float16 or bfloat16")
    if not (x.is_cuda or INTERPRETING):
        raise KernelError(f"tensors on {x.device}: the Triton kernel needs CUDA tensors "
                          "(or TRITON_INTERPRET=1 set before import)")


def probe_loss_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused probe loss; same contract as `probe_loss_reference`."""
    check_inputs(x, weight, bias, labels)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, weight, bias))
    return TritonProbeLoss.apply(x, weight, bias, labels, grad)
