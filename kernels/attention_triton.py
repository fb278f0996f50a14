"""Causal self-attention in Triton, forward and backward, for short sequences (T <= 1024).

q, k, v: ``[batch, heads, T, d_head]`` (fp32, fp16 or bf16; d_head a power of two, 16..128;
the last dimension contiguous) -> ``[batch, heads, T, d_head]``. T need not be a multiple of
the block: rows and columns past T are masked.

Layout of the work:

- forward: one program per (block of BLOCK_M queries, group of HEADS heads); keys in blocks of
  BLOCK_N with an online softmax, or, when one block holds all keys (T <= BLOCK_N), a plain
  softmax without a loop (about half the registers, so more heads in flight per SM); the
  log-sum-exp of every row (base 2) is kept for backward.
- backward, whole sequence in one tile (``T <= FUSED_MAX_T[d_head]``, the mOthello case): one
  program per group of heads holds all of a head's K and V, walks the queries in blocks of
  BLOCK_M (straight-line code when one block holds them all) and writes dq, dk and dv in a
  single pass (delta = rowsum(dO * O) computed in place).
- backward, longer sequences: a dk/dv kernel (one program per key block) and a dq kernel (one
  program per query block), with delta computed beforehand.

Dropout uses Philox (``tl.rand``) keyed by ``seed`` and the head index, with offset
``query * T + key``: forward and backward regenerate the same mask, and `attention_dropout_mask`
writes it out so the plain-torch reference can reproduce a kernel call exactly.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache

import torch
import triton
import triton.language as tl

from mothello_fast.errors import KernelError, check_float, check_int

HEAD_DIMS = (16, 32, 64, 128)
MAX_T = 1024
# Longest sequence whose whole K and V fit one backward tile, by head dim.
FUSED_MAX_T = {16: 128, 32: 128, 64: 128, 128: 64}
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _configs(blocks, heads, warps, stages, maxnreg=None):
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "HEADS": h}, num_warps=w, num_stages=s,
                          maxnreg=maxnreg)
            for m, n in blocks for h in heads for w in warps for s in stages]


# Candidate launch configurations for sequences longer than 64 (a T <= 64 runs as one tile per
# head, see `_one_tile_configs`), pruned per (T bucket, d_head) by `configs_for`. One head per
# program (a loop over heads spills registers); ``maxnreg`` variants where capping ptxas costs
# no spill at d_head 64 and lets more warps share an SM (sm_90).
FWD_CONFIGS = (_configs([(64, 64), (128, 64), (64, 128), (128, 128)], [1], [4, 8], [2])
               + _configs([(32, 64)], [1], [4], [2])
               + _configs([(64, 64)], [1], [8], [2], maxnreg=128)
               + _configs([(128, 64), (64, 128)], [1], [8], [2], maxnreg=168))
BWD_FUSED_CONFIGS = (_configs([(16, 0), (32, 0), (64, 0)], [1], [4, 8], [2])
                     + _configs([(16, 0)], [1], [8], [2], maxnreg=168))
BWD_DKDV_CONFIGS = _configs([(32, 64), (64, 64), (32, 128), (64, 128)], [1], [4, 8], [2])
BWD_DQ_CONFIGS = _configs([(64, 32), (64, 64), (128, 32), (128, 64)], [1], [4, 8], [2])
# Autotune over the candidates on CUDA; when False (or under the interpreter) the first
# candidate is used, which keeps wide correctness sweeps from compiling every candidate.
AUTOTUNE = True
# Autotuning times every candidate over this many milliseconds (after AUTOTUNE_WARMUP_MS of
# warm-up): the kernels run ~0.1 ms, and candidates differ by a few percent.
AUTOTUNE_WARMUP_MS = 25
AUTOTUNE_REP_MS = 250


def t_bucket(T: int) -> int:
    """The power of two >= T (at least 16) that launch configurations are chosen for."""
    return max(16, triton.next_power_of_2(T))


def uses_fused_backward(T: int, head_dim: int) -> bool:
    """Whether backward runs as one pass over the whole sequence (see module docstring)."""
    return T <= FUSED_MAX_T[head_dim]


def _one_tile_configs(kind: str, tb: int, head_dim: int) -> list[triton.Config]:
    """T <= 64: the whole sequence is one tile (BLOCK_N = T bucket), no pipelining to gain
    (one iteration). The kernels are latency-bound there (a head's work is a short chain of
    loads, products and stores), so candidates trade registers per thread for resident
    warps: ``maxnreg`` caps ptxas (128 with 8 warps lets two programs share an SM, 168 with
    4 warps three), and 32-row passes of the fused backward need fewer live registers. One
    head per program: looping over heads in a program spills (sm_90, d_head 64)."""
    if kind == "fwd":
        shapes = [(tb, 4, None), (tb, 8, None), (min(32, tb), 4, None), (min(32, tb), 8, None)]
    else:  # bwd_fused
        shapes = [(tb, 8, None), (tb, 8, 128), (min(32, tb), 8, None), (min(32, tb), 8, 128),
                  (min(32, tb), 4, None)]
        if head_dim >= 128:  # K and V of a 128-wide head take the registers: 32-row passes
            shapes = [(min(32, m), w, r) for m, w, r in shapes]
    configs = {}
    for m, w, r in shapes:
        configs.setdefault((m, w, r), triton.Config({"BLOCK_M": m, "BLOCK_N": tb, "HEADS": 1},
                                                    num_warps=w, num_stages=1, maxnreg=r))
    return list(configs.values())


def configs_for(kind: str, T: int, head_dim: int) -> list[triton.Config]:
    """Launch configurations worth trying for one kernel ('fwd', 'bwd_fused', 'bwd_dkdv',
    'bwd_dq') at sequence length T and head dim ``head_dim``: one tile per head up to T = 64,
    else blocks no bigger than the sequence, tiles small enough for the registers at large
    head dims."""
    tb = t_bucket(T)
    if tb <= 64 and kind in ("fwd", "bwd_fused"):
        return _one_tile_configs(kind, tb, head_dim)
    if kind == "bwd_fused":
        keep = [c for c in BWD_FUSED_CONFIGS if c.kwargs["BLOCK_M"] <= tb
                and (head_dim < 128 or c.kwargs["BLOCK_M"] <= 32)]
        return [triton.Config({**c.kwargs, "BLOCK_N": tb}, num_warps=c.num_warps,
                              num_stages=c.num_stages, maxnreg=c.maxnreg) for c in keep]
    pool = {"fwd": FWD_CONFIGS, "bwd_dkdv": BWD_DKDV_CONFIGS, "bwd_dq": BWD_DQ_CONFIGS}[kind]
    keep = [c for c in pool
            if c.kwargs["BLOCK_M"] <= max(32, tb) and c.kwargs["BLOCK_N"] <= max(32, tb)
            and (head_dim < 128 or c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] <= 64 * 64)
            and (c.kwargs["HEADS"] == 1 or tb <= 128)]
    if not keep:  # every block too big for a tiny T: take the smallest tiles of the pool
        smallest = min(c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] for c in pool)
        keep = [c for c in pool if c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] == smallest]
    return keep


def describe_config(config: triton.Config) -> dict:
    """A launch configuration's contents (what a benchmark log should show)."""
    return {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages,
            "maxnreg": config.maxnreg}


def launch_options(config: triton.Config) -> dict:
    """Keyword arguments that launch a kernel with ``config`` (its meta-parameters, warps,
    stages and register cap)."""
    options = {**config.kwargs, "num_warps": config.num_warps, "num_stages": config.num_stages}
    if config.maxnreg is not None:
        options["maxnreg"] = config.maxnreg
    return options


# --------------------------------------------------------------------------- kernels

@triton.jit
def _dropout_keep(seed, bh, offsets, dropout_p):
    """Keep mask (True = kept) for entries ``offsets`` (query * T + key) of head ``bh``."""
    key = seed.to(tl.int64) + (bh.to(tl.int64) << 32)
    return tl.rand(key, offsets) >= dropout_p


@triton.jit
def _load_rows(ptr, offs, stride_t, ok, HEAD_DIM: tl.constexpr):
    """Rows ``offs`` of one head's [T, HEAD_DIM] matrix; rows where ``ok`` is False read 0."""
    offs_d = tl.arange(0, HEAD_DIM)
    return tl.load(ptr + offs[:, None] * stride_t + offs_d[None, :], mask=ok[:, None], other=0.0)


@triton.jit
def _store_rows(ptr, offs, stride_t, ok, value, HEAD_DIM: tl.constexpr):
    offs_d = tl.arange(0, HEAD_DIM)
    tl.store(ptr + offs[:, None] * stride_t + offs_d[None, :], value.to(ptr.dtype.element_ty),
             mask=ok[:, None])


@triton.jit(do_not_specialize=["seed", "T"])
def _attn_fwd_kernel(Q, K, V, O, LSE, seed, sm_scale, dropout_p,
                     sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
                     H, T, BH, T_BUCKET: tl.constexpr,
                     HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                     DOT_PRECISION: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr):
    """With all keys in one block (BLOCK_N >= T_BUCKET) a plain softmax, no loop: half the
    registers of the online-softmax loop (sm_90), so more heads run at once per SM."""
    start_m = tl.program_id(0) * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row_ok = offs_m < T
    qk_scale = sm_scale * 1.4426950408889634  # softmax in base 2
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, T)
    else:
        hi = T
    for i in range(HEADS):
        bh = tl.program_id(1) * HEADS + i
        if bh < BH:
            b = bh // H
            h = bh % H
            q = _load_rows(Q + b * sqb + h * sqh, offs_m, sqt, row_ok, HEAD_DIM)
            if BLOCK_N >= T_BUCKET:
                offs_n = tl.arange(0, BLOCK_N)
                col_ok = offs_n < T
                k = _load_rows(K + b * skb + h * skh, offs_n, skt, col_ok, HEAD_DIM)
                v = _load_rows(V + b * svb + h * svh, offs_n, svt, col_ok, HEAD_DIM)
                s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
                valid = col_ok[None, :]
                if CAUSAL:
                    valid = valid & (offs_m[:, None] >= offs_n[None, :])
                s = tl.where(valid, s, float("-inf"))
                m_i = tl.max(s, 1)
                p = tl.exp2(s - m_i[:, None])
                l_i = tl.sum(p, 1)
                if DROPOUT:
                    keep = _dropout_keep(seed, bh, offs_m[:, None] * T + offs_n[None, :],
                                         dropout_p)
                    p = tl.where(keep, p, 0.0)
                acc = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
            else:
                m_i, l_i, acc = _online_softmax_rows(
                    q, K + b * skb + h * skh, V + b * svb + h * svh, skt, svt, offs_m, hi, T,
                    seed, bh, qk_scale, dropout_p, HEAD_DIM, CAUSAL, DROPOUT, DOT_PRECISION,
                    BLOCK_M, BLOCK_N)
            out = acc / l_i[:, None]
            if DROPOUT:
                out = out * (1.0 / (1.0 - dropout_p))
            _store_rows(O + b * sob + h * soh, offs_m, sot, row_ok, out, HEAD_DIM)
            tl.store(LSE + bh * T + offs_m, m_i + tl.log2(l_i), mask=row_ok)


@triton.jit
def _online_softmax_rows(q, K, V, skt, svt, offs_m, hi, T, seed, bh, qk_scale, dropout_p,
                         HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                         DOT_PRECISION: tl.constexpr, BLOCK_M: tl.constexpr,
                         BLOCK_N: tl.constexpr):
    """Forward over key blocks of one head (K, V: that head's base pointers) with an online
    softmax: row max, row sum (base 2) and the unnormalised output ``[BLOCK_M, HEAD_DIM]``."""
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < T
        k = _load_rows(K, offs_n, skt, col_ok, HEAD_DIM)
        v = _load_rows(V, offs_n, svt, col_ok, HEAD_DIM)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
        valid = col_ok[None, :]
        if CAUSAL:
            valid = valid & (offs_m[:, None] >= offs_n[None, :])
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp2(s - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        if DROPOUT:
            keep = _dropout_keep(seed, bh, offs_m[:, None] * T + offs_n[None, :], dropout_p)
            p = tl.where(keep, p, 0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new
    return m_i, l_i, acc


@triton.jit
def _bwd_query_block(Q, DO, O, DQ, LSE, DELTA, k, v, dk, dv, offs_n, col_ok, start_m, seed, bh,
                     sm_scale, qk_scale, dropout_p, T, sqt, sdot, sot, sdqt,
                     HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                     DOT_PRECISION: tl.constexpr, FUSED: tl.constexpr, BLOCK_M: tl.constexpr):
    """One block of BLOCK_M queries against a head's key block (k, v ``[BLOCK_N, HEAD_DIM]``;
    Q, DO, O, DQ, LSE, DELTA: that head's base pointers): returns dk and dv with this block's
    share added; with FUSED also writes the block's dq (delta from dO and O)."""
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row_ok = offs_m < T
    q = _load_rows(Q, offs_m, sqt, row_ok, HEAD_DIM)
    do = _load_rows(DO, offs_m, sdot, row_ok, HEAD_DIM)
    if FUSED:
        o = _load_rows(O, offs_m, sot, row_ok, HEAD_DIM)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
    else:
        delta = tl.load(DELTA + offs_m, mask=row_ok, other=0.0)
    lse = tl.load(LSE + offs_m, mask=row_ok, other=0.0)
    s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # [N, M]
    valid = row_ok[None, :] & col_ok[:, None]
    if CAUSAL:
        valid = valid & (offs_m[None, :] >= offs_n[:, None])
    p_t = tl.exp2(tl.where(valid, s_t - lse[None, :], float("-inf")))
    # dv before dp: fewer [BLOCK_N, BLOCK_M] tiles alive at once
    if DROPOUT:
        keep_scale = 1.0 / (1.0 - dropout_p)
        keep = _dropout_keep(seed, bh, offs_m[None, :] * T + offs_n[:, None], dropout_p)
        dv = tl.dot(tl.where(keep, p_t * keep_scale, 0.0).to(do.dtype), do, dv,
                    input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        dp_t = tl.where(keep, dp_t * keep_scale, 0.0)
    else:
        dv = tl.dot(p_t.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])
    dk = tl.dot(ds_t.to(q.dtype), q, dk, input_precision=DOT_PRECISION)
    if FUSED:
        dq = tl.dot(tl.trans(ds_t).to(k.dtype), k, input_precision=DOT_PRECISION)
        _store_rows(DQ, offs_m, sdqt, row_ok, dq * sm_scale, HEAD_DIM)
    return dk, dv


@triton.jit(do_not_specialize=["seed", "T"])
def _attn_bwd_dkdv_kernel(Q, K, V, O, DO, DQ, DK, DV, LSE, DELTA, seed, sm_scale, dropout_p,
                          sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
                          sdob, sdoh, sdot, sdqb, sdqh, sdqt, sdkb, sdkh, sdkt, sdvb, sdvh, sdvt,
                          H, T, BH, T_BUCKET: tl.constexpr,
                          HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                          DOT_PRECISION: tl.constexpr, FUSED: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr):
    """dk and dv of one key block; with FUSED (the block holds the whole sequence) also dq
    and delta, so backward is this one launch."""
    start_n = tl.program_id(0) * BLOCK_N
    offs_n = start_n + tl.arange(0, BLOCK_N)
    col_ok = offs_n < T
    qk_scale = sm_scale * 1.4426950408889634
    if CAUSAL:
        lo = (start_n // BLOCK_M) * BLOCK_M
    else:
        lo = 0
    for i in range(HEADS):
        bh = tl.program_id(1) * HEADS + i
        if bh < BH:
            b = bh // H
            h = bh % H
            k = _load_rows(K + b * skb + h * skh, offs_n, skt, col_ok, HEAD_DIM)
            v = _load_rows(V + b * svb + h * svh, offs_n, svt, col_ok, HEAD_DIM)
            dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
            dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
            heads = (Q + b * sqb + h * sqh, DO + b * sdob + h * sdoh, O + b * sob + h * soh,
                     DQ + b * sdqb + h * sdqh, LSE + bh * T, DELTA + bh * T)
            if FUSED and BLOCK_M >= T_BUCKET:  # one query block: no loop, fewer registers
                dk, dv = _bwd_query_block(*heads, k, v, dk, dv, offs_n, col_ok, 0, seed, bh,
                                          sm_scale, qk_scale, dropout_p, T, sqt, sdot, sot,
                                          sdqt, HEAD_DIM, CAUSAL, DROPOUT, DOT_PRECISION, FUSED,
                                          BLOCK_M)
            else:
                for start_m in range(lo, T, BLOCK_M):
                    dk, dv = _bwd_query_block(*heads, k, v, dk, dv, offs_n, col_ok, start_m,
                                              seed, bh, sm_scale, qk_scale, dropout_p, T, sqt,
                                              sdot, sot, sdqt, HEAD_DIM, CAUSAL, DROPOUT,
                                              DOT_PRECISION, FUSED, BLOCK_M)
            _store_rows(DK + b * sdkb + h * sdkh, offs_n, sdkt, col_ok, dk * sm_scale, HEAD_DIM)
            _store_rows(DV + b * sdvb + h * sdvh, offs_n, sdvt, col_ok, dv, HEAD_DIM)


@triton.jit(do_not_specialize=["seed", "T"])
def _attn_bwd_dq_kernel(Q, K, V, DO, DQ, LSE, DELTA, seed, sm_scale, dropout_p,
                        sqb, sqh, sqt, skb, skh, skt, svb, svh, svt,
                        sdob, sdoh, sdot, sdqb, sdqh, sdqt,
                        H, T, BH, T_BUCKET,
                        HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, DROPOUT: tl.constexpr,
                        DOT_PRECISION: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEADS: tl.constexpr):
    """dq of one query block (sequences longer than one backward tile)."""
    start_m = tl.program_id(0) * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    row_ok = offs_m < T
    qk_scale = sm_scale * 1.4426950408889634
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, T)
    else:
        hi = T
    for i in range(HEADS):
        bh = tl.program_id(1) * HEADS + i
        if bh < BH:
            b = bh // H
            h = bh % H
            q = _load_rows(Q + b * sqb + h * sqh, offs_m, sqt, row_ok, HEAD_DIM)
            do = _load_rows(DO + b * sdob + h * sdoh, offs_m, sdot, row_ok, HEAD_DIM)
            lse = tl.load(LSE + bh * T + offs_m, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + bh * T + offs_m, mask=row_ok, other=0.0)
            dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
            for start_n in range(0, hi, BLOCK_N):
                offs_n = start_n + tl.arange(0, BLOCK_N)
                col_ok = offs_n < T
                k = _load_rows(K + b * skb + h * skh, offs_n, skt, col_ok, HEAD_DIM)
                v = _load_rows(V + b * svb + h * svh, offs_n, svt, col_ok, HEAD_DIM)
                s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
                valid = row_ok[:, None] & col_ok[None, :]
                if CAUSAL:
                    valid = valid & (offs_m[:, None] >= offs_n[None, :])
                p = tl.exp2(tl.where(valid, s - lse[:, None], float("-inf")))
                dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)
                if DROPOUT:
                    keep = _dropout_keep(seed, bh, offs_m[:, None] * T + offs_n[None, :],
                                         dropout_p)
                    dp = tl.where(keep, dp * (1.0 / (1.0 - dropout_p)), 0.0)
                ds = p * (dp - delta[:, None])
                dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PRECISION)
            _store_rows(DQ + b * sdqb + h * sdqh, offs_m, sdqt, row_ok, dq * sm_scale, HEAD_DIM)


@triton.jit(do_not_specialize=["seed", "T"])
def _dropout_mask_kernel(KEEP, seed, dropout_p, T, BLOCK_M: tl.constexpr, BLOCK: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    bh = tl.program_id(1)
    offs_n = tl.arange(0, BLOCK)
    offsets = offs_m[:, None] * T + offs_n[None, :]
    keep = _dropout_keep(seed, bh, offsets, dropout_p)
    tl.store(KEEP + bh * T * T + offsets, keep.to(tl.int8),
             mask=(offs_m[:, None] < T) & (offs_n[None, :] < T))


# --------------------------------------------------------------------------- launching

def _autotune_bench(fn, quantiles=None):
    from triton.testing import do_bench
    return do_bench(fn, warmup=AUTOTUNE_WARMUP_MS, rep=AUTOTUNE_REP_MS, quantiles=quantiles)


@lru_cache(maxsize=None)
def _autotuned(kind: str, tb: int, head_dim: int):
    kernel = {"fwd": _attn_fwd_kernel, "bwd_fused": _attn_bwd_dkdv_kernel,
              "bwd_dkdv": _attn_bwd_dkdv_kernel, "bwd_dq": _attn_bwd_dq_kernel}[kind]
    options = dict(configs=configs_for(kind, tb, head_dim),
                   key=["T_BUCKET", "HEAD_DIM", "CAUSAL", "DROPOUT"])
    try:
        return triton.autotune(**options, do_bench=_autotune_bench)(kernel)
    except TypeError:  # a Triton without the do_bench option: its default timing
        return triton.autotune(**options)(kernel)


def tuner_report(tuner) -> dict:
    """An autotuner's choices: ``{"chosen": {tuning key: config contents}, "last tuning, ms
    per candidate": [(config contents, median ms), ...]}`` (empty before the first call)."""
    if not tuner.cache:
        return {}
    timings = getattr(tuner, "configs_timings", None) or {}
    return {"chosen": {str(k): describe_config(c) for k, c in tuner.cache.items()},
            "last tuning, ms per candidate": [
                (describe_config(c), round(float(t[0] if isinstance(t, (list, tuple)) else t), 4))
                for c, t in timings.items()]}


def tuned_configs(T: int, head_dim: int) -> dict:
    """`tuner_report` of every kernel tuned so far at sequence length T and head dim
    ``head_dim``: ``{kind: report}``."""
    kinds = (("fwd", "bwd_fused") if uses_fused_backward(T, head_dim)
             else ("fwd", "bwd_dkdv", "bwd_dq"))
    reports = {kind: tuner_report(_autotuned(kind, t_bucket(T), head_dim)) for kind in kinds}
    return {kind: r for kind, r in reports.items() if r}


def _launch(kind: str, kernel, grid_rows: int, T: int, BH: int, head_dim: int, args: tuple,
            config: triton.Config | None, **constexprs) -> None:
    """Run one kernel: with ``config`` if given, else the first candidate under the
    interpreter or without `AUTOTUNE`, else autotuned over `configs_for`. ``grid_rows``: the
    length that axis 0 of the grid tiles (T for query/key blocks, 1 for the fused backward)."""
    block_axis = "BLOCK_N" if kind.startswith("bwd_") and kind != "bwd_dq" else "BLOCK_M"

    def grid(meta):
        return (triton.cdiv(grid_rows, meta[block_axis]), triton.cdiv(BH, meta["HEADS"]))

    if config is None and (INTERPRETING or not AUTOTUNE):
        config = configs_for(kind, T, head_dim)[0]
    if config is None:
        _autotuned(kind, t_bucket(T), head_dim)[grid](*args, **constexprs)
    else:
        kernel[grid(config.kwargs)](*args, **constexprs, **launch_options(config))


def _dot_precision(dtype: torch.dtype) -> str:
    """fp32 products in tf32 only where torch itself allows it for matmuls."""
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _strides(*tensors: torch.Tensor) -> tuple[int, ...]:
    return tuple(s for t in tensors for s in t.stride()[:3])


def attention_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, dropout_p: float,
                      causal: bool, seed: int, config: triton.Config | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the forward kernel. q, k, v: ``[B, H, T, D]``. Returns the output ``[B, H, T, D]``
    (stored as ``[B, T, H, D]``, so merging heads is free) and the base-2 log-sum-exp of every
    row, ``float32 [B*H, T]``."""
    B, H, T, D = q.shape
    o = torch.empty((B, T, H, D), dtype=q.dtype, device=q.device).transpose(1, 2)
    lse = torch.empty((B * H, T), dtype=torch.float32, device=q.device)
    args = (q, k, v, o, lse, seed, 1.0 / math.sqrt(D), float(dropout_p),
            *_strides(q, k, v, o), H, T, B * H, t_bucket(T))
    _launch("fwd", _attn_fwd_kernel, T, T, B * H, D, args, config, HEAD_DIM=D, CAUSAL=causal,
            DROPOUT=dropout_p > 0.0, DOT_PRECISION=_dot_precision(q.dtype))
    return o, lse


def attention_backward(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       o: torch.Tensor, lse: torch.Tensor, *, dropout_p: float, causal: bool,
                       seed: int, config: triton.Config | None = None,
                       dq_config: triton.Config | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the backward kernel(s); returns dq, dk, dv shaped like q, k, v.
    ``config`` is for the fused or dk/dv kernel, ``dq_config`` for the dq kernel."""
    B, H, T, D = q.shape
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    fused = uses_fused_backward(T, D)
    delta = lse if fused else (o.float() * do.float()).sum(-1)  # (B, H, T) = rowsum(dO * O)
    common = (seed, 1.0 / math.sqrt(D), float(dropout_p))
    tail = (H, T, B * H, t_bucket(T))
    constexprs = dict(HEAD_DIM=D, CAUSAL=causal, DROPOUT=dropout_p > 0.0,
                      DOT_PRECISION=_dot_precision(q.dtype))
    args = (q, k, v, o, do, dq, dk, dv, lse, delta, *common,
            *_strides(q, k, v, o, do, dq, dk, dv), *tail)
    _launch("bwd_fused" if fused else "bwd_dkdv", _attn_bwd_dkdv_kernel, 1 if fused else T, T,
            B * H, D, args, config, FUSED=fused, **constexprs)
    if not fused:
        args = (q, k, v, do, dq, lse, delta, *common, *_strides(q, k, v, do, dq), *tail)
        _launch("bwd_dq", _attn_bwd_dq_kernel, T, T, B * H, D, args, dq_config, **constexprs)
    return dq, dk, dv


MAX_SEED = 2**32 - 1   # a dropout seed above it would share a Philox key with another head


def attention_dropout_mask(batch: int, heads: int, T: int, *, dropout_p: float, seed: int,
                           device: torch.device | str) -> torch.Tensor:
    """The keep mask that the kernels use for ``seed``: ``bool [batch, heads, T, T]``
    (True = kept), for `attention_reference(..., dropout_mask=...)`."""
    seed = check_int("seed", seed, least=0, most=MAX_SEED, error=KernelError)
    keep = torch.empty((batch, heads, T, T), dtype=torch.int8, device=device)
    check_offsets(keep)
    _dropout_mask_kernel[(triton.cdiv(T, 16), batch * heads)](keep, seed, float(dropout_p), T,
                                                               BLOCK_M=16, BLOCK=t_bucket(T))
    return keep.bool()


# --------------------------------------------------------------------------- autograd

def _forward_with_seed(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
                       causal: bool, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`attention_forward`, drawing the seed from torch's generator when ``seed < 0`` (so
    torch.manual_seed fixes it); the seed used comes back as an ``int64`` CPU scalar."""
    if dropout_p > 0.0 and seed < 0:
        seed = int(torch.randint(0, 2**31 - 1, (), device="cpu"))
    seed = max(seed, 0)
    o, lse = attention_forward(q, k, v, dropout_p=dropout_p, causal=causal, seed=seed)
    return o, lse, torch.tensor(seed, dtype=torch.int64)


def _backward_with_seed(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        o: torch.Tensor, lse: torch.Tensor, seed: torch.Tensor,
                        dropout_p: float, causal: bool
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return attention_backward(do, q, k, v, o, lse, dropout_p=dropout_p, causal=causal,
                              seed=int(seed))


# The same two functions as custom ops, opaque to torch.compile (used while compiling; eager
# calls skip the dispatcher).
_attention_fwd_op = torch.library.custom_op("mothello_fast::attention_fwd", _forward_with_seed,
                                            mutates_args=())
_attention_bwd_op = torch.library.custom_op("mothello_fast::attention_bwd", _backward_with_seed,
                                            mutates_args=())


@_attention_fwd_op.register_fake
def _(q, k, v, dropout_p, causal, seed):
    B, H, T, D = q.shape
    return (q.new_empty((B, T, H, D)).transpose(1, 2),
            q.new_empty((B * H, T), dtype=torch.float32),
            torch.empty((), dtype=torch.int64, device="cpu"))


@_attention_bwd_op.register_fake
def _(do, q, k, v, o, lse, seed, dropout_p, causal):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class TritonAttention(torch.autograd.Function):
    """Causal attention with the Triton kernels; ``apply(q, k, v, dropout_p, causal, seed)``,
    seed < 0 drawing one from torch's generator."""

    @staticmethod
    def forward(ctx, q, k, v, dropout_p, causal, seed):
        fwd = _attention_fwd_op if torch.compiler.is_compiling() else _forward_with_seed
        o, lse, seed_used = fwd(q, k, v, dropout_p, causal, seed)
        ctx.save_for_backward(q, k, v, o, lse, seed_used)
        ctx.dropout_p = dropout_p
        ctx.causal = causal
        return o

    @staticmethod
    def backward(ctx, do):
        refuse_double_backward("the Triton attention", "backend='sdpa' or 'reference'")
        q, k, v, o, lse, seed_used = ctx.saved_tensors
        if do.stride(-1) != 1:
            do = do.contiguous()
        bwd = _attention_bwd_op if torch.compiler.is_compiling() else _backward_with_seed
        dq, dk, dv = bwd(do, q, k, v, o, lse, seed_used, ctx.dropout_p, ctx.causal)
        return dq, dk, dv, None, None, None


def refuse_double_backward(what: str, instead: str) -> None:
    """KernelError when a backward runs with grad mode on (``create_graph=True``): the
    kernels' gradients carry no graph, so a second derivative would silently be zero."""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise KernelError(f"double backward (create_graph=True) through {what} is not "
                          f"supported: its gradients carry no graph; use {instead}")


# The kernels compute element offsets in 32-bit integers (program ids times strides).
MAX_OFFSET = 2**31 - 1


def max_offset(tensor: torch.Tensor) -> int:
    """The offset of `tensor`'s last element from its first, in elements."""
    return sum((n - 1) * abs(s) for n, s in zip(tensor.shape, tensor.stride())) \
        if tensor.numel() else 0


def offsets_fit(*tensors: torch.Tensor) -> bool:
    """Whether the kernels' 32-bit offsets reach every element of `tensors` and of dense
    tensors of their shapes (the outputs and gradients the kernels write)."""
    return all(max(max_offset(t), t.numel() - 1) <= MAX_OFFSET for t in tensors)


def check_offsets(*tensors: torch.Tensor) -> None:
    """KernelError unless `offsets_fit(*tensors)`."""
    for t in tensors:
        if not offsets_fit(t):
            raise KernelError(f"a {tuple(t.shape)} tensor of {t.numel():,} elements (spanning "
                              f"{max_offset(t) + 1:,}): the Triton kernels address at most "
                              "2**31 elements a tensor; split the batch, or use another backend")


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise KernelError unless q, k, v fit the kernels."""
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise KernelError(f"q, k, v shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}:"
                          " expected three equal [batch, heads, T, d_head] shapes")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16,
                                                                 torch.bfloat16):
        raise KernelError(f"dtypes {q.dtype}, {k.dtype}, {v.dtype}: expected one of float32, "
                          "float16, bfloat16 for all three")
    T, D = q.shape[2], q.shape[3]
    if not 1 <= T <= MAX_T:
        raise KernelError(f"sequence length {T}: expected 1..{MAX_T}")
    if D not in HEAD_DIMS:
        raise KernelError(f"head dim {D}: expected one of {HEAD_DIMS}")
    if not (q.is_cuda or INTERPRETING):
        raise KernelError(f"tensors on {q.device}: the Triton kernels need CUDA tensors "
                          "(or TRITON_INTERPRET=1 set before import)")
    check_offsets(q, k, v)


def attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
                     dropout_p: float = 0.0, causal: bool = True,
                     seed: int | None = None) -> torch.Tensor:
    """Causal attention with the Triton kernels. q, k, v: ``[B, H, T, D]`` -> ``[B, H, T, D]``.

    seed: for the dropout mask, 0..2**32-1 (the Philox key holds the head above it;
    ``None``: drawn from torch's generator); `attention_dropout_mask` gives the same mask
    for the reference. dropout_p: in [0, 1)."""
    check_inputs(q, k, v)
    if seed is not None:
        seed = check_int("seed", seed, least=0, most=MAX_SEED, error=KernelError)
    dropout_p = check_float("dropout_p", dropout_p, low=0, high=1, high_open=True,
                            error=KernelError)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    return TritonAttention.apply(q, k, v, dropout_p, bool(causal),
                                 -1 if seed is None else seed)
