"""The fused board-probe kernel against the plain-torch reference.

Runs under TRITON_INTERPRET=1 on CPU (set in conftest.py) or on CUDA. Tolerances (fp32): loss
within 1e-5 relative, gradients within 1e-6 absolute (they are O(1 / labelled count)), correct
squares exact.
"""
import os

import pytest
import torch

triton = pytest.importorskip("triton")

from mothello_fast.errors import KernelError  # noqa: E402
from mothello_fast.kernels import probe_triton as pt  # noqa: E402
from mothello_fast.kernels.probe import probe_loss, probe_loss_reference  # noqa: E402

RUNS_HERE = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.skipif(not RUNS_HERE, reason="needs CUDA or TRITON_INTERPRET=1")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(N, D, *, ignored=0.2, seed=0, label_dtype=torch.int64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g)
    w = torch.randn(D, 64, 3, generator=g) / D ** 0.5
    b = torch.randn(64, 3, generator=g) * 0.1
    labels = torch.randint(0, 3, (N, 64), generator=g)
    labels[torch.rand(N, 64, generator=g) < ignored] = -100
    return ([t.to(DEVICE).requires_grad_() for t in (x, w, b)]
            + [labels.to(device=DEVICE, dtype=label_dtype)])


def _loss_and_grads(fn, x, w, b, labels, grad_scale=1.0):
    loss, correct = fn(x, w, b, labels)
    grads = torch.autograd.grad(loss * grad_scale, (x, w, b))
    return loss.detach(), correct, grads


def _assert_matches_reference(x, w, b, labels, *, config=None, grad_scale=1.0, programs=None):
    if config is None:
        got = _loss_and_grads(lambda *a: probe_loss(*a, backend="triton"), x, w, b, labels,
                              grad_scale)
    else:  # one launch configuration: the launcher directly, gradients scaled by hand
        totals, dx, buf = pt.probe_forward(x.detach(), w.detach(), b.detach(), labels,
                                           grad=True, config=config, programs=programs)
        dw, db = pt.split_buffer(buf, x.shape[1])
        count = totals[1].float()
        got = (totals[0].float() / count, totals[2], (dx / count, dw / count, db / count))
    want = _loss_and_grads(probe_loss_reference, x, w, b, labels, grad_scale)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=0)
    assert got[1].item() == want[1].item()
    for name, g, r in zip(("dx", "dW", "db"), got[2], want[2]):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("N,D", [(1, 16), (37, 64), (100, 40), (130, 96)])
def test_loss_correct_and_gradients_match_reference(N, D):
    _assert_matches_reference(*_inputs(N, D))


def test_every_launch_config_matches_reference():
    distinct = {tuple(sorted(c.kwargs.items())): c for c in pt.PROBE_CONFIGS}
    inputs = _inputs(70, 72, seed=3)
    for config in distinct.values():
        _assert_matches_reference(*inputs, config=config)


@pytest.mark.parametrize("programs", [1, 3])
def test_split_d_programs_walking_several_row_blocks_match_reference(programs):
    """Few programs: each walks several row blocks (ragged last one) and keeps its d chunk of
    dW in registers; 130 rows, d = 200 (a ragged last chunk)."""
    config = next(c for c in pt.PROBE_CONFIGS if c.kwargs["SPLIT_D"]
                  and c.kwargs["BLOCK_C"] == 64)
    grid = pt.probe_grid(130, 200, config.kwargs, grad=True, programs=programs)
    assert grid[1] == 4 and triton.cdiv(130, config.kwargs["BLOCK_N"]) > grid[0]
    _assert_matches_reference(*_inputs(130, 200, seed=9), config=config, programs=programs)


def test_forward_only_config_matches_reference():
    x, w, b, labels = (t.detach() if t.is_floating_point() else t for t in _inputs(70, 40))
    totals, dx, _ = pt.probe_forward(x, w, b, labels, grad=False,
                                     config=pt.PROBE_FORWARD_CONFIG)
    loss, correct = probe_loss_reference(x, w, b, labels)
    torch.testing.assert_close((totals[0] / totals[1]).float(), loss, rtol=1e-5, atol=0)
    assert totals[2].item() == correct.item() and dx.numel() == 0


def test_mostly_ignored_labels_and_fully_ignored_rows_match_reference():
    x, w, b, labels = _inputs(40, 32, ignored=0.9, seed=1)
    labels[:10] = -100
    _assert_matches_reference(x, w, b, labels)


def test_upstream_gradient_scales_the_gradients():
    _assert_matches_reference(*_inputs(33, 32, seed=2), grad_scale=2.5)


def test_small_integer_labels_give_the_same_result_as_int64():
    x, w, b, labels = _inputs(20, 32, seed=4)
    small = probe_loss(x, w, b, labels.to(torch.int8), backend="triton")
    full = probe_loss(x, w, b, labels, backend="triton")
    assert torch.equal(small[0], full[0]) and small[1].item() == full[1].item()


def test_without_gradients_the_loss_and_count_are_unchanged():
    x, w, b, labels = _inputs(50, 48, seed=5)
    with torch.no_grad():
        loss, correct = probe_loss(x, w, b, labels, backend="triton")
        ref_loss, ref_correct = probe_loss_reference(x, w, b, labels)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=0)
    assert correct.item() == ref_correct.item()


def test_auto_on_cpu_is_the_reference():
    x, w, b, labels = (t.detach().cpu() for t in _inputs(10, 16, seed=6))
    got = probe_loss(x, w, b, labels)
    want = probe_loss_reference(x, w, b, labels)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_auto_takes_the_kernel_on_cuda_unless_deterministic_algorithms_are_asked_for():
    from mothello_fast.kernels.probe import HAVE_TRITON, auto_picks_triton
    assert auto_picks_triton(is_cuda=True, dtype=torch.bfloat16) == HAVE_TRITON
    assert not auto_picks_triton(is_cuda=False, dtype=torch.bfloat16)
    assert not auto_picks_triton(is_cuda=True, dtype=torch.float64)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:   # the kernel adds dW with atomics: its sums vary in their last bits
        assert not auto_picks_triton(is_cuda=True, dtype=torch.bfloat16)
    finally:
        torch.use_deterministic_algorithms(before)


def test_unknown_backend_is_rejected():
    with pytest.raises(KernelError, match="cuda"):
        probe_loss(*_inputs(2, 16), backend="cuda")


@pytest.mark.parametrize("which,match", [("weight", r"weight shape \(16, 64, 2\)"),
                                         ("labels", r"labels torch.int64 \(3, 64\)")])
def test_mismatched_shapes_are_rejected(which, match):
    x, w, b, labels = _inputs(2, 16)
    if which == "weight":
        w = w[..., :2]
    else:
        labels = torch.zeros(3, 64, dtype=torch.int64, device=DEVICE)
    with pytest.raises(KernelError, match=match):
        probe_loss(x, w, b, labels, backend="triton")


def test_compiled_probe_step_matches_eager():
    x, w, b, labels = _inputs(24, 32, seed=7)

    def step(x, w, b, labels):
        loss, correct = probe_loss(x, w, b, labels, backend="triton")
        return loss, correct

    got = _loss_and_grads(torch.compile(step, backend="aot_eager", fullgraph=True),
                          x, w, b, labels)
    want = _loss_and_grads(step, x, w, b, labels)
    torch.testing.assert_close(got[0], want[0])
    assert got[1].item() == want[1].item()
    for g, r in zip(got[2], want[2]):
        torch.testing.assert_close(g, r)


def test_weight_in_another_memory_layout_is_read_through_its_strides():
    x, w, b, labels = _inputs(30, 48, seed=8)
    w_class_major = w.detach().permute(2, 0, 1).contiguous().permute(1, 2, 0).requires_grad_()
    assert not w_class_major.is_contiguous()
    _assert_matches_reference(x, w_class_major, b, labels)


def test_half_precision_activations_match_reference_with_the_weight_rounded_alike():
    """fp16 x: the kernel multiplies in fp16 (weight rounded to it), accumulates in fp32."""
    x, w, b, labels = _inputs(90, 48, seed=10)
    x16 = x.detach().half().requires_grad_()
    loss, correct = probe_loss(x16, w, b, labels, backend="triton")
    grads = torch.autograd.grad(loss, (x16, w, b))
    ref_loss, ref_correct = probe_loss_reference(x16, w.half(), b, labels)
    ref_grads = torch.autograd.grad(ref_loss, (x16, w, b))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=0)
    assert correct.item() == ref_correct.item()
    for name, g, r in zip(("dx", "dW", "db"), grads, ref_grads):
        assert g.dtype == r.dtype, name
        torch.testing.assert_close(g.float(), r.float(), atol=1e-5, rtol=1e-2,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_double_backward_through_the_kernel_is_refused():
    x, w, b, labels = _inputs(8, 16, seed=3)
    loss, _ = probe_loss(x, w, b, labels, backend="triton")
    with pytest.raises(KernelError, match="double backward .* not supported"):
        torch.autograd.grad(loss, x, create_graph=True)   # gx would not depend on w


@pytest.mark.parametrize("bad", [3, -1, -99])
def test_labels_outside_the_classes_are_refused(bad):
    x, w, b, labels = _inputs(8, 16, seed=4)
    labels[2, 5] = bad
    for backend in ("triton", "reference"):
        with pytest.raises(KernelError, match=f"label {bad}: expected a class 0..2 or -100"):
            probe_loss(x, w, b, labels, backend=backend)


def test_activations_beyond_32_bit_offsets_are_refused():
    # meta tensors: shapes without memory; x has 2**31 + 128 elements (labels 2**30 + 64)
    n, d = 2**31 // 128 + 1, 128
    x = torch.empty(n, d, device="meta")
    weight, bias = torch.empty(d, 64, 3, device="meta"), torch.empty(64, 3, device="meta")
    labels = torch.empty(n, 64, dtype=torch.int64, device="meta")
    with pytest.raises(KernelError, match=r"\(16777217, 128\) tensor .* at most 2\*\*31"):
        pt.probe_loss_triton(x, weight, bias, labels)
