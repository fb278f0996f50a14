"""The Triton kernels on CUDA: fp16/bf16 at full size against the fp32 reference, dropout with a
shared mask, torch.compile with the Triton backend, the probe kernel at probe-training size,
and a short GPT training run whose loss curve with the Triton kernel follows the SDPA run.

Run: ``python -m pytest tests/gpu/test_kernels_gpu.py -v -s --timeout 300`` (``-s`` prints the
errors, the launch configurations and the loss curves, for diagnosis; ``-k probe`` or
``-k "not probe"`` runs one half).
"""
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
triton = pytest.importorskip("triton")

from mothello_fast.kernels import attention_triton as at  # noqa: E402
from mothello_fast.kernels.attention import (attention, attention_dropout_mask,  # noqa: E402
                                             attention_reference)
from mothello_fast.kernels.probe import probe_loss, probe_loss_reference  # noqa: E402

# Max abs error allowed against the fp32 reference computed from the same 16-bit inputs,
# relative to the reference's max magnitude (unit-normal q, k, v, dO).
REL_TOL = {torch.float16: 4e-3, torch.bfloat16: 2.5e-2}


def _randn(shape, seed, dtype):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(shape, generator=g, device="cuda").to(dtype)


def _check(name, got, want, dtype):
    err = (got.float() - want.float()).abs().max().item()
    scale = want.float().abs().max().item()
    print(f"  {name}: max err {err:.3g} (scale {scale:.3g}, rel {err / max(scale, 1e-6):.3g})")
    assert err <= REL_TOL[dtype] * max(scale, 1.0), f"{name}: max err {err} vs scale {scale}"


def _compare(B, H, T, D, dtype, *, dropout_p=0.0, causal=True, seed=None):
    q, k, v = (_randn((B, H, T, D), i, dtype).requires_grad_() for i in range(3))
    do = _randn((B, H, T, D), 3, dtype)
    out = at.attention_triton(q, k, v, dropout_p=dropout_p, causal=causal, seed=seed)
    grads = torch.autograd.grad(out, (q, k, v), do)
    mask = (attention_dropout_mask(B, H, T, dropout_p=dropout_p, seed=seed, device="cuda")
            if dropout_p else None)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref = attention_reference(q32, k32, v32, dropout_p=dropout_p, causal=causal,
                              dropout_mask=mask)
    ref_grads = torch.autograd.grad(ref, (q32, k32, v32), do.float())
    print(f"\nB={B} H={H} T={T} D={D} {dtype} dropout={dropout_p} causal={causal} "
          f"fused_bwd={at.uses_fused_backward(T, D)}")
    assert out.dtype == dtype and out.shape == q.shape
    _check("out", out, ref, dtype)
    for name, g, r in zip(("dq", "dk", "dv"), grads, ref_grads):
        _check(name, g, r, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("T", [59, 125])
def test_autotuned_kernels_match_reference_at_mothello_lengths(T, dtype):
    _compare(64, 8, T, 64, dtype)
    print(f"  autotuned: {at.tuned_configs(T, 64)}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("D", [32, 64, 128])
@pytest.mark.parametrize("T", [1, 60, 128, 256, 1000, 1024])
def test_first_config_matches_reference_over_lengths_and_head_dims(T, D, dtype, monkeypatch):
    monkeypatch.setattr(at, "AUTOTUNE", False)  # one compile per shape class, not every config
    _compare(4, 8, T, D, dtype)


def test_non_causal_matches_reference(monkeypatch):
    monkeypatch.setattr(at, "AUTOTUNE", False)
    _compare(4, 8, 125, 64, torch.bfloat16, causal=False)


@pytest.mark.parametrize("T,D", [(59, 64), (300, 64), (125, 128)])
def test_dropout_matches_reference_with_the_same_mask(T, D, monkeypatch):
    monkeypatch.setattr(at, "AUTOTUNE", False)
    _compare(4, 8, T, D, torch.bfloat16, dropout_p=0.1, seed=2024)


@pytest.mark.parametrize("T", [59, 125])
def test_every_forward_and_fused_backward_config_compiles_and_matches_reference(T):
    B, H, D, dtype = 8, 8, 64, torch.bfloat16
    q, k, v, do = (_randn((B, H, T, D), i, dtype) for i in range(4))
    q32, k32, v32 = (t.float().requires_grad_() for t in (q, k, v))
    ref_o = attention_reference(q32, k32, v32)
    ref = torch.autograd.grad(ref_o, (q32, k32, v32), do.float())
    for config in at.configs_for("fwd", T, D):
        o, _ = at.attention_forward(q, k, v, dropout_p=0.0, causal=True, seed=0, config=config)
        _check(f"out {at.describe_config(config)}", o, ref_o, dtype)
    o, lse = at.attention_forward(q, k, v, dropout_p=0.0, causal=True, seed=0)
    for config in at.configs_for("bwd_fused", T, D):
        grads = at.attention_backward(do, q, k, v, o, lse, dropout_p=0.0, causal=True, seed=0,
                                      config=config)
        for name, g, r in zip(("dq", "dk", "dv"), grads, ref):
            _check(f"{name} {at.describe_config(config)}", g, r, dtype)


def _tiny_gpt(backend, dropout, seed=0):
    from mothello_fast.model import GPT, GPTConfig
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=65, context_length=59, n_layers=4, n_heads=8, d_model=512,
                       d_mlp=2048, dropout=dropout, attention_backend=backend)
    return GPT(config).cuda()


def _batches(n_steps, batch, seed=0):
    """Tokens: square + 1 (0 = after the game's end); targets: the next move's square."""
    from mothello_fast.othello import generate_games
    games = torch.from_numpy(generate_games(n_steps * batch, seed=seed)).long().cuda()
    tokens = (games[:, :59] + 1).clamp(min=0)
    targets = games[:, 1:].masked_fill(games[:, 1:] < 0, -100)
    return tokens.view(n_steps, batch, 59), targets.view(n_steps, batch, 59)


def _train(backend, dropout, n_steps=60, batch=64, compile_model=False):
    model = _tiny_gpt(backend, dropout)
    step_model = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    tokens, targets = _batches(n_steps, batch)
    torch.manual_seed(1)
    losses = []
    for i in range(n_steps):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = step_model(tokens[i], targets[i])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _print_curves(a, b):
    print("\nstep   sdpa     triton")
    for i in range(0, len(a), 5):
        print(f"{i:4d}  {a[i]:.4f}  {b[i]:.4f}")


def test_training_loss_curve_with_triton_follows_sdpa_without_dropout():
    sdpa = _train("sdpa", 0.0)
    triton_ = _train("triton", 0.0)
    _print_curves(sdpa, triton_)
    assert sdpa[-1] < sdpa[0] - 0.3  # the run learns something
    diffs = [abs(a - b) for a, b in zip(sdpa, triton_)]
    assert max(diffs) < 0.05, f"largest per-step gap {max(diffs)}"


def test_training_loss_curve_with_triton_follows_sdpa_with_dropout():
    sdpa = _train("sdpa", 0.1)
    triton_ = _train("triton", 0.1)
    _print_curves(sdpa, triton_)
    tail = slice(-10, None)
    mean_sdpa = sum(sdpa[tail]) / 10
    mean_triton = sum(triton_[tail]) / 10
    assert abs(mean_sdpa - mean_triton) < 0.05 * mean_sdpa


def test_compiled_gpt_with_triton_attention_matches_eager():
    model = _tiny_gpt("triton", 0.0).eval()
    tokens, targets = _batches(1, 32)
    compiled = torch.compile(model)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss_c = compiled(tokens[0], targets[0])
        _, loss_e = model(tokens[0], targets[0])
    g_c = torch.autograd.grad(loss_c, model.blocks[0].attn.qkv.weight)[0]
    g_e = torch.autograd.grad(loss_e, model.blocks[0].attn.qkv.weight)[0]
    print(f"\ncompiled loss {loss_c.item():.5f} eager {loss_e.item():.5f}")
    assert abs(loss_c.item() - loss_e.item()) < 1e-2
    torch.testing.assert_close(g_c.float(), g_e.float(), atol=2e-3, rtol=5e-2)


def test_auto_backend_follows_the_switch(monkeypatch):
    from mothello_fast.kernels import attention as attn_mod
    q, k, v = (_randn((2, 8, 59, 64), i, torch.bfloat16) for i in range(3))
    monkeypatch.setattr(attn_mod, "AUTO_TRITON_ON_CUDA", True)
    assert torch.equal(attention(q, k, v), at.attention_triton(q, k, v))


def _probe_inputs(N, D, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(N, D, generator=g, device="cuda").to(dtype).requires_grad_()
    w = (torch.randn(D, 64, 3, generator=g, device="cuda") / D ** 0.5).requires_grad_()
    b = (torch.randn(64, 3, generator=g, device="cuda") * 0.1).requires_grad_()
    labels = torch.randint(0, 3, (N, 64), generator=g, device="cuda")
    labels[torch.rand(N, 64, generator=g, device="cuda") < 0.1] = -100
    return x, w, b, labels


def _check_probe(N, D, dtype, *, config=None, grad=True):
    """The kernel (autotuned when ``config`` is None) against the reference, which sees the
    weight rounded to x's dtype as the kernel multiplies in it."""
    from mothello_fast.kernels import probe_triton as pt
    x, w, b, labels = _probe_inputs(N, D, dtype)
    ref_loss, ref_correct = probe_loss_reference(x, w.to(dtype), b, labels)
    ref_grads = torch.autograd.grad(ref_loss, (x, w, b))
    if config is None:
        with torch.set_grad_enabled(grad):
            loss, correct = probe_loss(x, w, b, labels, backend="triton")
        grads = torch.autograd.grad(loss, (x, w, b)) if grad else None
    else:
        totals, dx, buf = pt.probe_forward(x.detach(), w.detach(), b.detach(), labels,
                                           grad=grad, config=config)
        count = totals[1]
        loss, correct = (totals[0] / count).float(), totals[2].long()
        grads = ((dx / count, *(t / count for t in pt.split_buffer(buf, D))) if grad
                 else None)
    torch.cuda.synchronize()
    print(f"\nN={N} D={D} {dtype} grad={grad} config="
          f"{at.describe_config(config) if config else pt.tuned_configs()}")
    print(f"  loss {loss.item():.6f} ref {ref_loss.item():.6f} "
          f"correct {correct.item()} ref {ref_correct.item()}")
    assert abs(loss.item() - ref_loss.item()) < 1e-4 * ref_loss.item()
    assert abs(correct.item() - ref_correct.item()) <= max(2, N * 64 // 10000)  # near ties
    for name, got, want in zip(("dx", "dW", "db"), grads or (), ref_grads):
        err = (got.float() - want.float()).abs().max().item()
        scale = want.float().abs().max().item()
        print(f"  {name}: max err {err:.3g} scale {scale:.3g}")
        assert got.shape == want.shape, name
        assert err <= (1e-4 if dtype == torch.float32 else 2e-2) * scale, name


# One launch configuration for the size sweep (a compile per dtype and d, not per candidate).
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("N,D", [(1024, 512), (59000, 512), (1000, 100)])
def test_probe_kernel_matches_reference_at_probe_sizes(N, D, dtype):
    from mothello_fast.kernels import probe_triton as pt
    _check_probe(N, D, dtype, config=pt.PROBE_CONFIGS[0])


def test_every_probe_config_matches_reference():
    from mothello_fast.kernels import probe_triton as pt
    for config in pt.PROBE_CONFIGS:
        _check_probe(3000, 512, torch.bfloat16, config=config)


def test_probe_forward_only_matches_reference():
    from mothello_fast.kernels import probe_triton as pt
    _check_probe(5000, 512, torch.bfloat16, config=pt.PROBE_FORWARD_CONFIG, grad=False)


def test_autotuned_probe_kernel_matches_reference_at_the_benchmark_size():
    _check_probe(65536, 512, torch.bfloat16)
