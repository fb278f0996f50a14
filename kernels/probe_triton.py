"""Board-probe loss in Triton: per-square 3-class softmax cross-entropy, its gradients and the
number of correct squares, in one pass over the activations.

x: ``[N, d]`` (fp32, fp16 or bf16), weight ``[d, 64, 3]``, bias ``[64, 3]``, labels
``int [N, 64]`` (class 0..2, or -100 to ignore). The weight is packed once per call into
``[3, d, 64]`` in x's dtype (so every load is contiguous; the products were in x's dtype
anyway). Each program walks row blocks of BLOCK_N rows; for each block it

1. computes the logits of the three classes, ``[BLOCK_N, 64]`` each, over all of d in chunks
   of BLOCK_K;
2. takes the log-sum-exp, loss, argmax and ``g_c = softmax_c - onehot_c`` in registers (the
   ``[N, 64, 3]`` probabilities never reach memory);
3. when gradients are wanted, writes ``dx = sum_c g_c @ w_c^T`` and accumulates
   ``x^T @ g_c`` for dW, BLOCK_C columns of d at a time.

Two layouts of the gradient work (a launch-configuration choice, ``SPLIT_D``):

- ``SPLIT_D=False``: one program per row block; it walks all of d for dx and adds each
  ``[BLOCK_C, 64, 3]`` piece of ``x^T g`` into dW with atomics (``N / BLOCK_N * d * 192``
  atomic adds per call).
- ``SPLIT_D=True``: a grid of (row groups, d chunks of BLOCK_C), a few programs per SM. A
  program walks the row blocks of its group, recomputes the logits (cheap next to memory
  traffic; the x rows are shared in L2 by the programs of the group), writes dx for its d
  chunk and keeps its chunk of dW in registers, adding it into dW once at the end
  (``groups * d * 192`` atomic adds: ~30x fewer at N = 65536, d = 512, BLOCK_N = 32 on an
  H200), at the price of recomputing the logits once per d chunk.

Per-group loss sums, label counts and correct counts are summed afterwards (deterministic).
Gradients are left unnormalised; the autograd function scales them by ``grad / count``. All
accumulators share one zeroed buffer.
"""
from __future__ import annotations

import os
from functools import lru_cache

import torch
import triton
import triton.language as tl

from mothello_fast.errors import KernelError

from .attention_triton import check_offsets, launch_options, refuse_double_backward, tuner_report

N_SQUARES = 64
N_CLASSES = 3
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"
# SPLIT_D grids aim at this many programs per SM (row groups x d chunks).
PROGRAMS_PER_SM = 2
# A row group holds at most this many rows, so its label count (<= rows * 64) is exact in fp32.
MAX_GROUP_ROWS = 1 << 18


def _config(split: bool, n: int, k: int, c: int, warps: int, stages: int) -> triton.Config:
    return triton.Config({"SPLIT_D": split, "BLOCK_N": n, "BLOCK_K": k, "BLOCK_C": c},
                         num_warps=warps, num_stages=stages)


# Autotuned with gradients (each candidate is a slow compile: keep the list short).
# Eight warps throughout: with four, ptxas spills the three logit tiles and gradients (sm_90
# register reports). In fp32 the third needs more shared memory than an SM has: the autotuner
# skips it there.
PROBE_CONFIGS = [_config(True, 32, 64, 64, 8, 2), _config(True, 32, 32, 64, 8, 2),
                 _config(True, 64, 64, 64, 8, 2), _config(False, 64, 64, 32, 8, 2),
                 _config(False, 64, 32, 32, 8, 2)]
# Loss and count only (no gradients): one row block per program, no tuning.
PROBE_FORWARD_CONFIG = _config(False, 64, 64, 64, 8, 2)
MIN_BLOCK_N = min(c.kwargs["BLOCK_N"] for c in PROBE_CONFIGS + [PROBE_FORWARD_CONFIG])
# Autotune on CUDA; when False (or under the interpreter) the first candidate is used.
AUTOTUNE = True


@triton.jit
def _load_tile(ptr, offs_r, r_ok, stride_r, offs_c, c_ok):
    """``ptr[offs_r, offs_c]`` of a row-major matrix with row stride ``stride_r``; 0 outside."""
    return tl.load(ptr + offs_r[:, None] * stride_r + offs_c[None, :],
                   mask=r_ok[:, None] & c_ok[None, :], other=0.0)


# N and the sizes derived from it are not specialised on: one compile serves every batch size.
@triton.jit(do_not_specialize=["N", "N_PARTS", "N_BUCKET"])
def _probe_kernel(X, W, B, LABELS, DX, DW, DB, PARTS,
                  N, D, N_PARTS, sxn, sbs, sbc, sln, sdxn, N_BUCKET,
                  GRAD: tl.constexpr, DOT_PRECISION: tl.constexpr, SPLIT_D: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """W: packed weight ``[3, D, 64]`` in x's dtype; DW: ``float32 [3, D, 64]``; DB:
    ``float32 [64, 3]``; PARTS: ``float32 [3, N_PARTS]``. Grid: (row groups, d chunks)."""
    group = tl.program_id(0)
    row_blocks = tl.cdiv(tl.cdiv(N, BLOCK_N), tl.num_programs(0))
    offs_s = tl.arange(0, 64)
    s_ok = offs_s < 64
    dt = X.dtype.element_ty
    wc = D * 64  # stride of the class axis of W and DW
    b0 = tl.load(B + offs_s * sbs).to(tl.float32)
    b1 = tl.load(B + offs_s * sbs + sbc).to(tl.float32)
    b2 = tl.load(B + offs_s * sbs + 2 * sbc).to(tl.float32)
    if SPLIT_D:
        c_lo = tl.program_id(1) * BLOCK_C
        c_hi = c_lo + BLOCK_C
    else:
        c_lo = 0
        c_hi = D
    loss_acc = tl.zeros([64], tl.float32)
    labelled_acc = tl.zeros([64], tl.int32)
    correct_acc = tl.zeros([64], tl.int32)
    db0 = tl.zeros([64], tl.float32)
    db1 = tl.zeros([64], tl.float32)
    db2 = tl.zeros([64], tl.float32)
    dw0 = tl.zeros([BLOCK_C, 64], tl.float32)
    dw1 = tl.zeros([BLOCK_C, 64], tl.float32)
    dw2 = tl.zeros([BLOCK_C, 64], tl.float32)
    for rb in range(0, row_blocks):
        offs_n = (group * row_blocks + rb) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = offs_n < N
        acc0 = tl.zeros([BLOCK_N, 64], tl.float32)
        acc1 = tl.zeros([BLOCK_N, 64], tl.float32)
        acc2 = tl.zeros([BLOCK_N, 64], tl.float32)
        for k0 in range(0, D, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < D
            x = _load_tile(X, offs_n, row_ok, sxn, offs_k, k_ok)
            acc0 = tl.dot(x, _load_tile(W, offs_k, k_ok, 64, offs_s, s_ok), acc0,
                          input_precision=DOT_PRECISION)
            acc1 = tl.dot(x, _load_tile(W + wc, offs_k, k_ok, 64, offs_s, s_ok), acc1,
                          input_precision=DOT_PRECISION)
            acc2 = tl.dot(x, _load_tile(W + 2 * wc, offs_k, k_ok, 64, offs_s, s_ok), acc2,
                          input_precision=DOT_PRECISION)
        l0 = acc0 + b0[None, :]
        l1 = acc1 + b1[None, :]
        l2 = acc2 + b2[None, :]
        labels = tl.load(LABELS + offs_n[:, None] * sln + offs_s[None, :], mask=row_ok[:, None],
                         other=-100).to(tl.int32)
        labelled = labels != -100
        mx = tl.maximum(tl.maximum(l0, l1), l2)
        e0 = tl.exp(l0 - mx)
        e1 = tl.exp(l1 - mx)
        e2 = tl.exp(l2 - mx)
        total = e0 + e1 + e2
        picked = tl.where(labels == 0, l0, tl.where(labels == 1, l1, l2))
        loss_acc += tl.sum(tl.where(labelled, mx + tl.log(total) - picked, 0.0), 0)
        pred = tl.where((l0 >= l1) & (l0 >= l2), 0, tl.where(l1 >= l2, 1, 2))  # first max
        labelled_acc += tl.sum(labelled.to(tl.int32), 0)
        correct_acc += tl.sum((labelled & (pred == labels)).to(tl.int32), 0)
        if GRAD:
            inv = 1.0 / total
            g0 = tl.where(labelled, e0 * inv - (labels == 0).to(tl.float32), 0.0)
            g1 = tl.where(labelled, e1 * inv - (labels == 1).to(tl.float32), 0.0)
            g2 = tl.where(labelled, e2 * inv - (labels == 2).to(tl.float32), 0.0)
            db0 += tl.sum(g0, 0)
            db1 += tl.sum(g1, 0)
            db2 += tl.sum(g2, 0)
            g0 = g0.to(dt)
            g1 = g1.to(dt)
            g2 = g2.to(dt)
            for c0 in range(c_lo, c_hi, BLOCK_C):
                offs_c = c0 + tl.arange(0, BLOCK_C)
                c_ok = offs_c < D
                w0 = _load_tile(W, offs_c, c_ok, 64, offs_s, s_ok)  # [BLOCK_C, 64]
                w1 = _load_tile(W + wc, offs_c, c_ok, 64, offs_s, s_ok)
                w2 = _load_tile(W + 2 * wc, offs_c, c_ok, 64, offs_s, s_ok)
                dx = tl.dot(g0, tl.trans(w0), input_precision=DOT_PRECISION)
                dx = tl.dot(g1, tl.trans(w1), dx, input_precision=DOT_PRECISION)
                dx = tl.dot(g2, tl.trans(w2), dx, input_precision=DOT_PRECISION)
                tl.store(DX + offs_n[:, None] * sdxn + offs_c[None, :], dx.to(dt),
                         mask=row_ok[:, None] & c_ok[None, :])
                x_t = tl.trans(_load_tile(X, offs_n, row_ok, sxn, offs_c, c_ok))
                if SPLIT_D:  # this loop runs once: the chunk stays in registers
                    dw0 = tl.dot(x_t, g0, dw0, input_precision=DOT_PRECISION)
                    dw1 = tl.dot(x_t, g1, dw1, input_precision=DOT_PRECISION)
                    dw2 = tl.dot(x_t, g2, dw2, input_precision=DOT_PRECISION)
                else:
                    dw_ptr = DW + offs_c[:, None] * 64 + offs_s[None, :]
                    dw_ok = c_ok[:, None] & s_ok[None, :]
                    tl.atomic_add(dw_ptr, tl.dot(x_t, g0, input_precision=DOT_PRECISION),
                                  mask=dw_ok)
                    tl.atomic_add(dw_ptr + wc, tl.dot(x_t, g1, input_precision=DOT_PRECISION),
                                  mask=dw_ok)
                    tl.atomic_add(dw_ptr + 2 * wc,
                                  tl.dot(x_t, g2, input_precision=DOT_PRECISION), mask=dw_ok)
    if tl.program_id(1) == 0:  # the d chunks of a group saw the same rows: count them once
        tl.store(PARTS + group, tl.sum(loss_acc, 0))
        tl.store(PARTS + N_PARTS + group, tl.sum(labelled_acc, 0).to(tl.float32))
        tl.store(PARTS + 2 * N_PARTS + group, tl.sum(correct_acc, 0).to(tl.float32))
        if GRAD:
            tl.atomic_add(DB + offs_s * 3, db0)
            tl.atomic_add(DB + offs_s * 3 + 1, db1)
            tl.atomic_add(DB + offs_s * 3 + 2, db2)
    if GRAD and SPLIT_D:
        offs_c = c_lo + tl.arange(0, BLOCK_C)
        dw_ptr = DW + offs_c[:, None] * 64 + offs_s[None, :]
        dw_ok = (offs_c < D)[:, None] & s_ok[None, :]
        tl.atomic_add(dw_ptr, dw0, mask=dw_ok)
        tl.atomic_add(dw_ptr + wc, dw1, mask=dw_ok)
        tl.atomic_add(dw_ptr + 2 * wc, dw2, mask=dw_ok)


@lru_cache(maxsize=None)
def _autotuned():
    # N_BUCKET (a kernel argument only for this key): the grid shape depends on N
    return triton.autotune(configs=PROBE_CONFIGS, key=["N_BUCKET", "D", "GRAD", "DOT_PRECISION"],
                           reset_to_zero=["DW", "DB", "PARTS"])(_probe_kernel)


def tuned_configs() -> dict:
    """The autotuner's choices so far (see `attention_triton.tuner_report`)."""
    return tuner_report(_autotuned())


@lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # the interpreter: any small number
    return torch.cuda.get_device_properties(device).multi_processor_count


def n_parts_for(N: int) -> int:
    """Length of the per-group partial sums: the largest number of row groups of any config."""
    return max(triton.cdiv(N, MIN_BLOCK_N), 1)


def probe_grid(N: int, D: int, meta: dict, *, grad: bool, programs: int) -> tuple[int, int]:
    """(row groups, d chunks) for one launch; ``programs``: the number of programs a SPLIT_D
    grid aims at."""
    row_blocks = max(triton.cdiv(N, meta["BLOCK_N"]), 1)
    if not (grad and meta["SPLIT_D"]):
        return (row_blocks, 1)
    chunks = triton.cdiv(D, meta["BLOCK_C"])
    groups = min(row_blocks, max(triton.cdiv(programs, chunks),
                                 triton.cdiv(N, MAX_GROUP_ROWS)))
    # the kernel gives each group cdiv(row_blocks, groups) blocks: drop groups left empty
    return (triton.cdiv(row_blocks, triton.cdiv(row_blocks, groups)), chunks)


def probe_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  labels: torch.Tensor, *, grad: bool, config: triton.Config | None = None,
                  programs: int | None = None) -> tuple[torch.Tensor, ...]:
    """Launch the probe kernel. Returns ``(totals, dx, buffer)``: totals ``float64 [3]``
    (loss sum, labelled count, correct count); the unnormalised gradients: dx (x's dtype
    ``[N, d]``, empty when ``grad`` is False) and ``float32`` buffer holding dW and db (see
    `split_buffer`). ``config``: a launch configuration (default: autotuned on CUDA);
    ``programs``: how many programs a SPLIT_D grid aims at (default a few per SM)."""
    N, D = x.shape
    if x.stride(1) != 1:
        x = x.contiguous()
    if labels.stride(1) != 1:
        labels = labels.contiguous()
    w_packed = weight.detach().to(x.dtype).permute(2, 0, 1).contiguous()  # (3, D, 64)
    n_parts = n_parts_for(N)
    n_grad = D * 192 + 192 if grad else 0
    buf = torch.zeros(n_grad + 3 * n_parts, dtype=torch.float32, device=x.device)  # one memset
    dw = buf[:D * 192] if grad else buf[:0]
    db = buf[D * 192:n_grad] if grad else buf[:0]
    parts = buf[n_grad:].view(3, n_parts)  # loss sums, labelled counts, correct counts
    dx = torch.empty((N, D) if grad else (0, D), dtype=x.dtype, device=x.device)
    args = (x, w_packed, bias.detach(), labels, dx, dw, db, parts, N, D, n_parts,
            x.stride(0), *bias.stride(), labels.stride(0), dx.stride(0) if grad else D,
            min(max(triton.next_power_of_2(N), 1 << 12), 1 << 16))
    precision = "ieee" if (x.dtype == torch.float32
                           and torch.get_float32_matmul_precision() == "highest") else "tf32"
    programs = programs or PROGRAMS_PER_SM * _sm_count(x.device)

    def grid(meta):
        return probe_grid(N, D, meta, grad=grad, programs=programs)

    if config is None and not grad:
        config = PROBE_FORWARD_CONFIG
    if config is None and (INTERPRETING or not AUTOTUNE):
        config = PROBE_CONFIGS[0]
    if config is None:
        _autotuned()[grid](*args, GRAD=grad, DOT_PRECISION=precision)
    else:
        _probe_kernel[grid(config.kwargs)](*args, GRAD=grad, DOT_PRECISION=precision,
                                           **launch_options(config))
    return parts.sum(1, dtype=torch.float64), dx, buf


def split_buffer(buf: torch.Tensor, D: int) -> tuple[torch.Tensor, torch.Tensor]:
    """dW ``float32 [D, 64, 3]`` (a view of the kernel's ``[3, D, 64]`` layout) and db
    ``float32 [64, 3]`` from `probe_forward`'s buffer."""
    return (buf[:D * 192].view(3, D, 64).permute(1, 2, 0),
            buf[D * 192:D * 192 + 192].view(64, 3))


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
    return (x.new_empty((3,), dtype=torch.float64), x.new_empty((N, D) if grad else (0, D)),
            x.new_empty(((D * 192 + 192) if grad else 0) + 3 * n_parts_for(N),
                        dtype=torch.float32))


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
        refuse_double_backward("the Triton probe loss", "backend='reference'")
        dx, buf, count = ctx.saved_tensors
        dw, db = split_buffer(buf, dx.shape[1])
        scale = grad_loss / count  # float64 scalar: keeps dx's dtype
        return (dx * scale,
                (dw * scale).to(ctx.dtypes[0], memory_format=torch.contiguous_format),
                (db * scale).to(ctx.dtypes[1]), None, None)


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
    check_offsets(x, labels)


def probe_loss_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused probe loss; same contract as `probe_loss_reference`."""
    check_inputs(x, weight, bias, labels)
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, weight, bias))
    return TritonProbeLoss.apply(x, weight, bias, labels, grad)
