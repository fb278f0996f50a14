"""The Triton attention kernels against the plain-torch reference.

Without CUDA the kernels run under TRITON_INTERPRET=1 (set in conftest.py) on CPU tensors, so
shapes stay tiny. Tolerances (fp32): outputs and gradients within 2e-5 absolute of the fp32
reference for unit-normal inputs.
"""
import os

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from mothello_fast.errors import KernelError  # noqa: E402
from mothello_fast.kernels import attention_triton as at  # noqa: E402
from mothello_fast.kernels.attention import (attention, attention_dropout_mask,  # noqa: E402
                                             attention_reference)

RUNS_HERE = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(not RUNS_HERE, reason="needs CUDA or TRITON_INTERPRET=1")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ATOL = 2e-5


def _qkv(B, H, T, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g).to(DEVICE).requires_grad_() for _ in range(3)]


def _grads(out, inputs, seed=1):
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out)
    return torch.autograd.grad(out, inputs, do)


def _assert_matches_reference(B, H, T, D, *, causal=True, dropout_p=0.0, seed=7, **kernel_kw):
    q, k, v = _qkv(B, H, T, D)
    if kernel_kw:  # a given launch configuration: call the launchers directly
        with torch.no_grad():
            o, lse = at.attention_forward(q, k, v, dropout_p=dropout_p, causal=causal, seed=seed,
                                          config=kernel_kw.get("fwd"))
        out = o
        do = torch.randn(o.shape, generator=torch.Generator().manual_seed(1)).to(o)
        grads = at.attention_backward(do, q.detach(), k.detach(), v.detach(), o, lse,
                                      dropout_p=dropout_p, causal=causal, seed=seed,
                                      config=kernel_kw.get("bwd"), dq_config=kernel_kw.get("dq"))
    else:
        out = at.attention_triton(q, k, v, dropout_p=dropout_p, causal=causal, seed=seed)
        grads = _grads(out, (q, k, v))
    mask = (attention_dropout_mask(B, H, T, dropout_p=dropout_p, seed=seed, device=DEVICE)
            if dropout_p else None)
    ref = attention_reference(q, k, v, dropout_p=dropout_p, causal=causal, dropout_mask=mask)
    ref_grads = _grads(ref, (q, k, v))
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
        torch.testing.assert_close(g, r, atol=ATOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("T", [1, 16, 59, 70])
@pytest.mark.parametrize("D", [32, 64])
def test_causal_output_and_gradients_match_reference(T, D):
    _assert_matches_reference(1, 2, T, D)


def test_head_dim_128_uses_split_backward_and_matches_reference():
    assert not at.uses_fused_backward(70, 128)
    _assert_matches_reference(1, 1, 70, 128)


def test_head_dim_128_short_sequence_uses_fused_backward_and_matches_reference():
    assert at.uses_fused_backward(33, 128)
    _assert_matches_reference(1, 1, 33, 128)


@pytest.mark.slow
@pytest.mark.parametrize("T", [2, 17, 63, 64, 65, 100, 127, 128, 129, 255, 300])
@pytest.mark.parametrize("D", [16, 32, 64, 128])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_wide_sweep_matches_reference(T, D, causal, dropout_p):
    _assert_matches_reference(1, 2, T, D, causal=causal, dropout_p=dropout_p, seed=T * D)


def test_sequence_longer_than_one_tile_matches_reference():
    assert not at.uses_fused_backward(200, 32)
    _assert_matches_reference(1, 1, 200, 32)


def test_non_causal_attention_matches_reference():
    _assert_matches_reference(2, 1, 59, 32, causal=False)


@pytest.mark.parametrize("T,D", [(59, 32), (70, 128)])
def test_dropout_with_a_seed_matches_reference_with_the_same_mask(T, D):
    _assert_matches_reference(1, 2, T, D, dropout_p=0.25, seed=1234)


def test_dropout_mask_keeps_one_minus_p_and_depends_on_seed_and_head():
    keep = attention_dropout_mask(2, 2, 64, dropout_p=0.3, seed=11, device=DEVICE)
    assert abs(keep.float().mean().item() - 0.7) < 0.02  # 16384 draws: std 0.0036
    assert not torch.equal(keep[0, 0], keep[0, 1]) and not torch.equal(keep[0, 0], keep[1, 0])
    again = attention_dropout_mask(2, 2, 64, dropout_p=0.3, seed=11, device=DEVICE)
    other = attention_dropout_mask(2, 2, 64, dropout_p=0.3, seed=12, device=DEVICE)
    assert torch.equal(keep, again) and not torch.equal(keep, other)


def test_dropout_output_mean_is_unbiased():
    q, k, v = _qkv(1, 4, 32, 32)
    with torch.no_grad():
        plain = attention_reference(q, k, v)
        drops = torch.stack([at.attention_triton(q, k, v, dropout_p=0.5, seed=s)
                             for s in range(24)])
    # every output is an average of dropped, rescaled rows: the mean over seeds approaches it
    err_one = (drops[0] - plain).abs().mean()
    err_mean = (drops.mean(0) - plain).abs().mean()
    assert err_mean < 0.35 * err_one


def test_dropout_gradient_matches_finite_differences_with_a_fixed_generator():
    """seed=None draws the seed from torch's generator: with torch.manual_seed before each call,
    a central difference along a random direction matches the analytic gradient."""
    q, k, v = (t.detach() for t in _qkv(1, 1, 16, 32, seed=3))
    direction = torch.randn(q.shape, generator=torch.Generator().manual_seed(5)).to(q)
    weights = torch.randn(q.shape, generator=torch.Generator().manual_seed(6)).to(q)

    def f(qq):
        torch.manual_seed(99)
        return (at.attention_triton(qq, k, v, dropout_p=0.2) * weights).sum()

    qg = q.clone().requires_grad_()
    (grad,) = torch.autograd.grad(f(qg), qg)
    eps = 1e-2
    numeric = (f(q + eps * direction) - f(q - eps * direction)) / (2 * eps)
    analytic = (grad * direction).sum()
    assert abs(numeric.item() - analytic.item()) < 2e-3 * max(1.0, abs(analytic.item()))


def _distinct(configs):
    seen = {}
    for c in configs:
        seen.setdefault(tuple(sorted(c.kwargs.items())), c)
    return list(seen.values())


@pytest.mark.parametrize("T,D", [(59, 32), (125, 16)])
def test_every_forward_and_fused_backward_config_matches_reference(T, D):
    fwd = _distinct(at.configs_for("fwd", T, D))
    bwd = _distinct(at.configs_for("bwd_fused", T, D))
    assert at.uses_fused_backward(T, D) and fwd and bwd
    for i in range(max(len(fwd), len(bwd))):
        _assert_matches_reference(1, 3, T, D, fwd=fwd[i % len(fwd)], bwd=bwd[i % len(bwd)])


def test_every_split_backward_config_matches_reference():
    T, D = 70, 128
    bwd = _distinct(at.configs_for("bwd_dkdv", T, D))
    dq = _distinct(at.configs_for("bwd_dq", T, D))
    fwd = _distinct(at.configs_for("fwd", T, D))
    assert bwd and dq
    for i in range(max(len(bwd), len(dq), len(fwd))):
        _assert_matches_reference(1, 1, T, D, fwd=fwd[i % len(fwd)], bwd=bwd[i % len(bwd)],
                                  dq=dq[i % len(dq)])


def test_strided_heads_from_a_fused_qkv_projection_match_reference():
    B, T, H, D = 2, 59, 2, 32
    qkv = torch.randn(B, T, 3, H, D, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    qkv.requires_grad_()
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, D), non-contiguous
    out = attention(q, k, v, backend="triton")
    ref = attention_reference(q, k, v)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    (g,) = _grads(out, (qkv,))
    (r,) = _grads(ref, (qkv,))
    torch.testing.assert_close(g, r, atol=ATOL, rtol=0)


def test_output_merges_heads_without_a_copy():
    q, k, v = _qkv(2, 2, 16, 32)
    out = at.attention_triton(q, k, v)
    assert out.transpose(1, 2).is_contiguous()


def test_half_precision_inputs_match_reference_within_half_tolerance():
    q, k, v = (t.detach().half() for t in _qkv(1, 2, 59, 32))
    out = at.attention_triton(q, k, v)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), attention_reference(q, k, v).float(),
                               atol=2e-3, rtol=0)


def test_auto_on_cpu_is_sdpa():
    q, k, v = _qkv(1, 2, 59, 32)
    q, k, v = q.detach().cpu(), k.detach().cpu(), v.detach().cpu()
    assert torch.equal(attention(q, k, v), F.scaled_dot_product_attention(q, k, v,
                                                                          is_causal=True))


def test_unknown_backend_is_rejected():
    q, k, v = _qkv(1, 1, 4, 32)
    with pytest.raises(KernelError, match="flash"):
        attention(q, k, v, backend="flash")


@pytest.mark.parametrize("shape,match", [((1, 1, 8, 48), "head dim 48"),
                                         ((1, 1, 1025, 32), "sequence length 1025")])
def test_unsupported_shapes_are_rejected(shape, match):
    q = torch.zeros(shape, device=DEVICE)
    with pytest.raises(KernelError, match=match):
        at.attention_triton(q, q, q)


class _TinyAttention(torch.nn.Module):
    def __init__(self, backend):
        super().__init__()
        self.proj = torch.nn.Linear(64, 3 * 64)
        self.backend = backend

    def forward(self, x):  # x: (B, T, 64)
        B, T, _ = x.shape
        q, k, v = self.proj(x).view(B, T, 3, 2, 32).permute(2, 0, 3, 1, 4).unbind(0)
        return attention(q, k, v, backend=self.backend).transpose(1, 2).reshape(B, T, 64)


@pytest.mark.parametrize("backend,compiler", [("auto", "inductor"), ("triton", "aot_eager")])
def test_compiled_module_matches_eager_in_output_and_gradients(backend, compiler):
    torch.manual_seed(0)
    model = _TinyAttention(backend).to(DEVICE)
    x = torch.randn(2, 16, 64, device=DEVICE)
    compiled = torch.compile(model, backend=compiler, fullgraph=True)
    out_c = compiled(x)
    (g_c,) = torch.autograd.grad(out_c.square().sum(), model.proj.weight)
    out_e = model(x)
    (g_e,) = torch.autograd.grad(out_e.square().sum(), model.proj.weight)
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_c, g_e, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("is_cuda,seq_len,head_dim,dropout_p,expected", [
    (True, 59, 64, 0.0, True),      # evaluation / probing lengths: measured faster
    (True, 125, 64, 0.0, True),
    (True, 128, 32, 0.0, True),
    (True, 59, 64, 0.1, False),     # training with dropout: SDPA measured faster
    (True, 256, 64, 0.0, False),    # longer than the measured win
    (True, 59, 48, 0.0, False),     # a head dim the kernel does not take
    (False, 59, 64, 0.0, False),    # CPU tensors
])
def test_auto_backend_takes_triton_only_where_it_was_measured_faster(is_cuda, seq_len, head_dim,
                                                                     dropout_p, expected):
    from mothello_fast.kernels.attention import HAVE_TRITON, auto_picks_triton
    assert auto_picks_triton(is_cuda=is_cuda, seq_len=seq_len, head_dim=head_dim,
                             dropout_p=dropout_p) == (expected and HAVE_TRITON)


def test_auto_backend_leaves_float64_to_sdpa():
    from mothello_fast.kernels.attention import auto_picks_triton
    assert not auto_picks_triton(is_cuda=True, seq_len=59, head_dim=64, dropout_p=0.0,
                                 dtype=torch.float64)


def test_double_backward_through_the_kernel_is_refused():
    q, k, v = _qkv(1, 2, 16, 32)
    out = attention(q, k, v, backend="triton")
    with pytest.raises(KernelError, match="double backward .* not supported"):
        torch.autograd.grad(out.sum(), q, create_graph=True)   # dq would not depend on v
    dq, = torch.autograd.grad(attention(q, k, v, backend="triton").sum(), q)   # first order: fine
    assert torch.isfinite(dq).all()


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_dropout_seed_outside_32_bits_is_refused(seed):
    q, k, v = _qkv(1, 2, 16, 32)
    with pytest.raises(KernelError, match=rf"seed={seed}: expected an integer in 0..{2**32 - 1}"):
        at.attention_triton(q, k, v, dropout_p=0.1, seed=seed)   # 2**32 would be head 1's key


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_dropout_probability_outside_0_1_is_refused(p):
    q, k, v = _qkv(1, 2, 16, 32)
    with pytest.raises(KernelError, match=rf"dropout_p={p}: expected a number in \[0, 1\)"):
        at.attention_triton(q, k, v, dropout_p=p)


# one batch row more than the 2**31 elements the kernels' 32-bit offsets reach (meta tensors:
# no memory is allocated)
TOO_BIG = (2**31 // (8 * 128 * 64) + 1, 8, 128, 64)


def test_max_offset_is_the_span_of_a_strided_view():
    x = torch.empty(4, 6, 8)
    assert at.max_offset(x) == x.numel() - 1
    assert at.max_offset(x[:, ::2, 1:]) == 3 * 48 + 2 * 16 + 6
    assert at.max_offset(x[:0]) == 0
    assert at.max_offset(torch.empty(1, 8).expand(5, 8)) == 7   # stride 0


def test_inputs_beyond_32_bit_offsets_are_refused_by_the_kernel():
    q = torch.empty(TOO_BIG, device="meta")
    with pytest.raises(KernelError, match=r"2,147,549,184 elements .* at most 2\*\*31"):
        at.attention_triton(q, q, q)
    small = torch.empty(TOO_BIG[0] - 1, *TOO_BIG[1:], device="meta")
    assert at.offsets_fit(small) and not at.offsets_fit(q)
    # a view spanning past 2**31 counts too, whatever its number of elements
    sparse = torch.empty(2**31 + 1, device="meta")[::2**20]     # 2,049 elements
    assert sparse.numel() == 2049 and not at.offsets_fit(sparse)


def test_auto_leaves_inputs_beyond_32_bit_offsets_to_sdpa(monkeypatch):
    from mothello_fast.kernels import attention as dispatch
    called = []
    monkeypatch.setattr(dispatch, "auto_picks_triton", lambda **kw: True)  # as on CUDA
    monkeypatch.setattr(dispatch, "attention_triton", lambda q, *a, **kw: called.append(q) or q)
    small = torch.empty(2, 8, 128, 64, device="meta")
    assert dispatch.attention(small, small, small) is small
    assert len(called) == 1 and called[0] is small
    big = torch.empty(TOO_BIG, device="meta")
    out = dispatch.attention(big, big, big)    # SDPA, on the meta device
    assert out.shape == big.shape and len(called) == 1


def test_a_dropout_mask_beyond_32_bit_offsets_is_refused():
    with pytest.raises(KernelError, match="at most 2\\*\\*31"):   # 2**31 + 2**24 mask entries
        at.attention_dropout_mask(129, 16, 1024, dropout_p=0.1, seed=0, device="meta")
