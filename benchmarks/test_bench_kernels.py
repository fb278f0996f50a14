"""Triton kernels against their baselines, measured in the same run (CUDA only).

1. Attention forward+backward, batch x heads = 8192, head dim 64, bf16, T = 59, 125, 256:
   the Triton kernel against every SDPA backend available (flash, memory-efficient, cuDNN,
   math) and the default SDPA dispatch. Goal: >= 1.0x the best SDPA backend at T = 59, 125.
2. Probe loss + gradients (N x 512 activations, 64 squares x 3 classes): the fused kernel
   against the torch reference, eager and torch.compile'd. Goal: >= 2x the eager reference.
3. A whole training step (forward, backward, AdamW) of the default model (8 layers, d 512,
   8 heads, batch 512, T 59, bf16 autocast) with each attention path, eager and compiled.

Times are medians of CUDA-event timings (triton.testing.do_bench). The launch configurations
the autotuner chose (and its timing of every candidate) are printed after each table. Either

    python benchmarks/test_bench_kernels.py            # prints the three tables
    python benchmarks/test_bench_kernels.py --only attention   # or probe, or step
    python -m pytest benchmarks/test_bench_kernels.py --benchmark-enable -s -q
"""
from __future__ import annotations

import argparse
import contextlib
import pprint
import sys
import time
import traceback

import pytest
import torch

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(not CUDA, reason="the kernels are benchmarked on CUDA")

ATTN_T = (59, 125, 256)
ATTN_BH = 8192
ATTN_HEADS = 8
ATTN_ROUNDS = 2
PROBE_N = (65536,)  # the goal size; --probe-all adds 1024
PROBE_N_ALL = (1024, 65536)
PROBE_D = 512
STEP_BATCH = 512
STEP_T = 59
DEVICE = "cuda"  # a dry run on CPU (TRITON_INTERPRET=1, tiny sizes) sets "cpu" and _ms


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _ms(fn, grad_to_none=None) -> float:
    from triton.testing import do_bench
    return do_bench(fn, warmup=25, rep=200, grad_to_none=grad_to_none, return_mode="median")


def _sdpa_backends() -> dict[str, object]:
    from torch.nn.attention import SDPBackend
    names = {"flash": "FLASH_ATTENTION", "mem-efficient": "EFFICIENT_ATTENTION",
             "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    return {name: getattr(SDPBackend, attr) for name, attr in names.items()
            if hasattr(SDPBackend, attr)}


def _attention_paths():
    """name -> context manager factory for the attention call (None: the Triton kernel)."""
    from torch.nn.attention import sdpa_kernel
    paths = {"triton": None, "sdpa (default)": contextlib.nullcontext}
    for name, backend in _sdpa_backends().items():
        paths[f"sdpa {name}"] = lambda b=backend: sdpa_kernel(b)
    return paths


def attention_table(Ts=ATTN_T, dropout_p=0.0) -> list[dict]:
    """One row per (T, path): ms for forward+backward, ratio best-SDPA / path."""
    from mothello_fast.kernels import attention_triton as at
    from mothello_fast.kernels.attention import attention
    rows = []
    for T in Ts:
        shape = (ATTN_BH // ATTN_HEADS, ATTN_HEADS, T, 64)
        q, k, v = (torch.randn(shape, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        do = torch.randn(shape, device=DEVICE, dtype=torch.bfloat16)
        steps = {}
        for name, ctx in _attention_paths().items():
            backend = "triton" if ctx is None else "sdpa"
            ctx = ctx or contextlib.nullcontext

            def step(ctx=ctx, backend=backend):
                with ctx():
                    attention(q, k, v, dropout_p=dropout_p, backend=backend).backward(do)

            def forward(ctx=ctx, backend=backend):  # graph kept for backward, no backward
                with ctx():
                    attention(q, k, v, dropout_p=dropout_p, backend=backend)
            try:
                step()  # autotunes the Triton kernels; raises where an SDPA backend is missing
                _sync()
            except RuntimeError as err:
                print(f"T={T} {name}: unavailable ({str(err).splitlines()[0][:90]})")
                continue
            steps[name] = (step, forward)
        # every path timed twice, round robin, best median kept: the first path timed must
        # not pay for clocks still rising after compiling and autotuning
        times, fwd_times = {}, {}
        for _ in range(ATTN_ROUNDS):
            for name, (step, forward) in steps.items():
                times[name] = min(times.get(name, float("inf")),
                                  _ms(step, grad_to_none=[q, k, v]))
                fwd_times[name] = min(fwd_times.get(name, float("inf")), _ms(forward))
        best_sdpa = min([t for n, t in times.items() if n.startswith("sdpa")],
                        default=float("nan"))
        for name, ms in times.items():
            rows.append(dict(T=T, path=name, ms=ms, fwd_ms=fwd_times[name],
                             speedup_vs_best_sdpa=best_sdpa / ms))
        _print_tuning(f"T={T} dropout={dropout_p}", at.tuned_configs(T, 64))
    return rows


def _print_tuning(label: str, report: dict) -> None:
    """The autotuner's choices and its per-candidate timings, contents spelled out."""
    print(f"\n{label} autotuned launch configurations:")
    print(pprint.pformat(report, width=120, sort_dicts=False))
    sys.stdout.flush()


PROBE_VARIANTS = (("float32 tf32", torch.float32, "high"), ("bfloat16", torch.bfloat16, "highest"))
PROBE_VARIANTS_ALL = (("float32", torch.float32, "highest"),) + PROBE_VARIANTS


def probe_table(Ns=PROBE_N, variants=PROBE_VARIANTS) -> list[dict]:
    """One row per (N, dtype, path): ms for loss + gradients, ratio eager / path. A variant is
    (label, activation dtype, torch.set_float32_matmul_precision for both sides)."""
    from mothello_fast.kernels import probe_triton as pt
    from mothello_fast.kernels.probe import probe_loss_reference
    from mothello_fast.kernels.probe_triton import probe_loss_triton
    compiled = torch.compile(probe_loss_reference)
    rows = []
    for N in Ns:
        for label, dtype, precision in variants:
            previous = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision(precision)
            x = torch.randn(N, PROBE_D, device=DEVICE).to(dtype).requires_grad_()
            w = (torch.randn(PROBE_D, 64, 3, device=DEVICE) / PROBE_D ** 0.5).requires_grad_()
            b = torch.zeros(64, 3, device=DEVICE, requires_grad=True)
            labels = torch.randint(0, 3, (N, 64), device=DEVICE)
            times = {}
            for name, fn in (("reference eager", probe_loss_reference),
                             ("reference compiled", compiled), ("triton", probe_loss_triton)):
                def step(fn=fn):
                    loss, _ = fn(x, w, b, labels)
                    loss.backward()
                start = time.perf_counter()
                step()  # compiles / autotunes
                _sync()
                print(f"N={N} {label} {name}: first call {time.perf_counter() - start:.1f} s")
                sys.stdout.flush()
                times[name] = _ms(step, grad_to_none=[x, w, b])
            torch.set_float32_matmul_precision(previous)
            _print_tuning(f"probe N={N} {label}", pt.tuned_configs())
            for name, ms in times.items():
                rows.append(dict(N=N, dtype=label, path=name, ms=ms,
                                 speedup_vs_eager=times["reference eager"] / ms))
    return rows


def training_step_table(compile_model=True) -> list[dict]:
    """One row per attention path (and compiled or not): ms per training step."""
    from mothello_fast.model import GPT, GPTConfig
    from mothello_fast.othello import generate_games
    games = torch.from_numpy(generate_games(STEP_BATCH, seed=0)).long().to(DEVICE)
    tokens = (games[:, :STEP_T] + 1).clamp(min=0)
    targets = games[:, 1:STEP_T + 1].masked_fill(games[:, 1:STEP_T + 1] < 0, -100)
    rows = []
    variants = [(name, False) for name in _attention_paths()]
    if compile_model:
        variants += [("triton", True), ("sdpa (default)", True)]
    for name, compiled in variants:
        ctx = _attention_paths()[name] or contextlib.nullcontext
        torch.manual_seed(0)
        backend = "triton" if name == "triton" else "sdpa"
        model = GPT(GPTConfig(vocab_size=65, context_length=STEP_T, dropout=0.1,
                              attention_backend=backend)).to(DEVICE)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        run = torch.compile(model) if compiled else model

        def step():
            with ctx(), torch.autocast(DEVICE, dtype=torch.bfloat16):
                _, loss = run(tokens, targets)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        try:
            for _ in range(3):
                step()
            _sync()
        except RuntimeError as err:
            print(f"step {name}: unavailable ({str(err).splitlines()[0][:90]})")
            continue
        rows.append(dict(path=name + (" compiled" if compiled else ""), ms=_ms(step)))
        del model, opt, run
        torch.cuda.empty_cache()
    base = next((r["ms"] for r in rows if r["path"] == "sdpa (default)"), float("nan"))
    for r in rows:
        r["speedup_vs_sdpa_default_eager"] = base / r["ms"]
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    cols = list(rows[0])
    print("  " + "  ".join(f"{c:>22}" for c in cols))
    for r in rows:
        print("  " + "  ".join(f"{r[c]:>22.3f}" if isinstance(r[c], float) else f"{r[c]!s:>22}"
                               for c in cols))


def _environment() -> str:
    import triton
    if DEVICE != "cuda":
        return f"{DEVICE}, torch {torch.__version__}, triton {triton.__version__}"
    return (f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
            f"triton {triton.__version__}, cuda {torch.version.cuda}")


# --------------------------------------------------------------------------- pytest mode

def test_attention_forward_backward(benchmark, report):
    rows = attention_table()
    print_table(f"attention fwd+bwd, BH={ATTN_BH}, D=64, bf16 ({_environment()})", rows)
    for r in rows:
        report(f"attention T={r['T']}", f"{r['path']} ms", r["ms"], "ms")
        report(f"attention T={r['T']}", f"{r['path']} speedup vs best SDPA",
               r["speedup_vs_best_sdpa"], "x")
    benchmark.extra_info["rows"] = rows
    benchmark.pedantic(lambda: None, rounds=1)


def test_attention_with_dropout(benchmark, report):
    rows = attention_table(Ts=(59,), dropout_p=0.1)
    print_table("attention fwd+bwd with dropout 0.1, T=59", rows)
    for r in rows:
        report("attention dropout T=59", f"{r['path']} ms", r["ms"], "ms")
    benchmark.extra_info["rows"] = rows
    benchmark.pedantic(lambda: None, rounds=1)


def test_probe_loss(benchmark, report):
    rows = probe_table()
    print_table(f"probe loss + gradients, d={PROBE_D}", rows)
    for r in rows:
        report(f"probe N={r['N']} {r['dtype']}", f"{r['path']} speedup vs eager",
               r["speedup_vs_eager"], "x")
    benchmark.extra_info["rows"] = rows
    benchmark.pedantic(lambda: None, rounds=1)


def test_training_step(benchmark, report):
    rows = training_step_table()
    print_table(f"training step, default model, batch {STEP_BATCH}, T {STEP_T}", rows)
    for r in rows:
        report("training step", f"{r['path']} ms", r["ms"], "ms")
    benchmark.extra_info["rows"] = rows
    benchmark.pedantic(lambda: None, rounds=1)


# --------------------------------------------------------------------------- script mode

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["attention", "probe", "step"], action="append",
                        help="run only these tables (repeatable); default all")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the compiled training steps (saves a minute or two)")
    parser.add_argument("--probe-all", action="store_true",
                        help="probe table also at N=1024 and in fp32 without tf32 (slower)")
    args = parser.parse_args(argv)
    if not CUDA:
        print("no CUDA device: nothing to benchmark")
        return 1
    only = set(args.only or ["attention", "probe", "step"])
    print(_environment())
    tables = [("attention", f"attention fwd+bwd, BH={ATTN_BH}, D=64, bf16", attention_table),
              ("attention", "attention fwd+bwd with dropout 0.1, T=59",
               lambda: attention_table(Ts=(59,), dropout_p=0.1)),
              ("probe", f"probe loss + gradients, d={PROBE_D}",
               lambda: (probe_table(PROBE_N_ALL, PROBE_VARIANTS_ALL) if args.probe_all
                        else probe_table())),
              ("step", f"training step, default model, batch {STEP_BATCH}, T {STEP_T}",
               lambda: training_step_table(compile_model=not args.no_compile))]
    failed = 0
    for group, title, table in tables:
        if group in only:
            start = time.perf_counter()
            try:
                print_table(title, table())
                print(f"({title}: {time.perf_counter() - start:.0f} s)")
                sys.stdout.flush()
            except Exception:  # keep going: one failing table should not hide the others
                failed += 1
                print(f"\n{title}: FAILED")
                traceback.print_exc()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
