"""Training throughput (tokens/s) and model FLOPs utilisation of one optimizer step.

Both sides run `train.train_step` (forward, backward, gradient clipping, AdamW) on a
fixed batch of random tokens, dropout on:

- ours: `torch.compile`d model, and on CUDA bf16 autocast, fused AdamW, TF32 allowed;
- baseline (the field's reference way: minGPT / othello_world): eager model, fp32,
  TF32 off, for-each AdamW.

On CUDA: the default model (8 layers, d_model 512, MLP 2048, 8 heads), a batch of 512
games of 60 tokens (vocab 121, context 60: the language set "atomic,atomic"). On CPU a
smaller shape (2 layers, d_model 128, 32 games) keeps the run to a few minutes.

    python -m pytest benchmarks/test_bench_train.py --benchmark-enable -s

A second benchmark (CUDA only) runs the whole `train()` loop (batches built on the GPU by
`Corpus`, the logging, no evaluation) and reads the tokens/s the trainer logs.

Environment: MOTHELLO_PEAK_TFLOPS (default 790, the H200's measured bf16 dense peak),
MOTHELLO_COMPILE_MODE (passed to torch.compile, e.g. max-autotune-no-cudagraphs),
MOTHELLO_BENCH_BATCH (games per step).

Script mode measures several variants of the step in one process, for finding where the
MFU goes (each compiled variant compiles afresh; ``--profile`` adds a per-kernel time
breakdown of one variant):

    python benchmarks/test_bench_train.py --sweep [--variants NAME,...] [--profile NAME,...]
    python benchmarks/test_bench_train.py --list
"""
import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext

import pytest
import torch

from mothello_fast.model import GPT, GPTConfig, flops_per_token
from mothello_fast.othello import generate_games
from mothello_fast.train import TrainConfig, make_optimizer, train, train_step

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
VOCAB, T = 121, 60
if CUDA:
    SHAPE = dict(n_layers=8, n_heads=8, d_model=512, d_mlp=2048)
    BATCH = int(os.environ.get("MOTHELLO_BENCH_BATCH", 512))
    WARMUP, ROUNDS = 5, 30
else:
    SHAPE = dict(n_layers=2, n_heads=4, d_model=128, d_mlp=512)
    BATCH = int(os.environ.get("MOTHELLO_BENCH_BATCH", 32))
    WARMUP, ROUNDS = 2, 10
PEAK = float(os.environ.get("MOTHELLO_PEAK_TFLOPS", 790)) * 1e12



def _sync():
    if CUDA:
        torch.cuda.synchronize()


# A variant of the training step: how the model is built, compiled and run. "ours" is what
# `train()` does on CUDA; "eager fp32" is the field's reference way. The others each change
# one thing of "ours", to show what it is worth.
OURS = dict(compile=True, compile_mode=None, bf16=True, tf32=True, fused=True, dropout=0.1,
            attention_backend="auto", batch=BATCH, inductor={}, feed="fixed")
# In the order a sweep runs them: the most telling first, since a time limit cuts the tail.
VARIANTS = {
    "eager fp32": dict(OURS, compile=False, bf16=False, tf32=False, fused=False),
    "ours": OURS,
    # what train() adds to the step: a Corpus batch built on the device, the learning rate
    # set and dropout reseeded every step (the loop ran 11% below the step, BENCHMARKS.md)
    "corpus batches": dict(OURS, feed="corpus"),
    "triton attention": dict(OURS, attention_backend="triton"),
    "no dropout": dict(OURS, dropout=0.0),
    "max-autotune-no-cudagraphs": dict(OURS, compile_mode="max-autotune-no-cudagraphs"),
    "reduce-overhead (CUDA graphs)": dict(OURS, compile_mode="reduce-overhead"),
    "coordinate-descent tuning": dict(OURS, inductor={"coordinate_descent_tuning": True}),
    "batch x2": dict(OURS, batch=2 * BATCH),
}


def _make_step(variant: dict, *, sync: bool = True):
    """A zero-argument training step of `variant` (see VARIANTS) and the model's config.
    The batch is a fixed random one, or with ``feed="corpus"`` the next `Corpus` batch
    of random games in "atomic,atomic" (vocab 121, context 60), as `train()` feeds
    it. With ``sync`` each call waits for the device."""
    cuda_fast = CUDA and variant["bf16"]
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = variant["tf32"]
        torch.backends.cudnn.allow_tf32 = variant["tf32"]
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=VOCAB, context_length=T, dropout=variant["dropout"],
                       attention_backend=variant["attention_backend"], **SHAPE)
    model = GPT(config).to(DEVICE).train()
    optimizer = make_optimizer(model, TrainConfig(), fused=variant["fused"] and CUDA)
    g = torch.Generator(device=DEVICE).manual_seed(1)
    batch = variant["batch"]
    tokens = torch.randint(1, VOCAB, (batch, T), device=DEVICE, generator=g)
    targets = torch.randint(1, VOCAB, (batch, T), device=DEVICE, generator=g)
    step_model, options = model, nullcontext()
    if variant["compile"]:
        import torch._inductor.config as inductor_config
        torch._dynamo.reset()  # a fresh compile: no recompile limit, no cached graph
        step_model = torch.compile(model, mode=variant["compile_mode"])
        # compiling happens in the first call, so the options hold around every call
        options = inductor_config.patch(variant["inductor"])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda_fast else nullcontext()
    feed = _corpus_feed(batch, optimizer) if variant["feed"] == "corpus" else None

    def step():
        batch_tokens, batch_targets = (tokens, targets) if feed is None else feed()
        with options:
            loss, _ = train_step(step_model, optimizer, batch_tokens, batch_targets,
                                 autocast=autocast, grad_clip=1.0)
        if sync:
            _sync()
        return loss

    return step, config


def _corpus_feed(batch: int, optimizer):
    """A function giving the (tokens, targets) of the next `Corpus` batch, after what
    `train()` does before each step: the learning rate set, dropout reseeded."""
    from mothello_fast.corpus import Corpus
    from mothello_fast.languages import LanguageSet
    from mothello_fast.train import _step_seed, learning_rate

    language_set = LanguageSet.from_spec("atomic,atomic")
    assert (language_set.vocab_size, language_set.context_length) == (VOCAB, T)
    corpus = Corpus(generate_games(20_000, seed=0), language_set, batch_size=batch,
                    device=DEVICE, seed=0)
    config, steps = TrainConfig(), iter(range(10**9))

    def feed():
        step = next(steps)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        torch.manual_seed(_step_seed(config.seed, step, 0))
        data = corpus.batch(step)
        return data.tokens, data.targets

    return feed


def _seconds_per_step(step, warmup: int = WARMUP, rounds: int = ROUNDS) -> float:
    """Mean seconds of `step` over `rounds` calls after `warmup`, one device sync at the
    end (as in training, where the host runs ahead of the device)."""
    for _ in range(warmup):
        step()
    _sync()
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    _sync()
    return (time.perf_counter() - start) / rounds


def _mfu_figures(config: GPTConfig, batch: int, seconds: float) -> dict:
    tokens = batch * T
    flops = flops_per_token(config, T) * tokens
    return {"tokens_per_s": tokens / seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / PEAK}


@pytest.mark.benchmark(group="train")
def test_bench_train_step_compiled_vs_eager_fp32(benchmark):
    baseline_step, config = _make_step(VARIANTS["eager fp32"])
    baseline_loss = float(baseline_step())   # the first step: the same weights and batch
    baseline_s = _seconds_per_step(baseline_step)
    del baseline_step

    step, _ = _make_step(dict(OURS, compile_mode=os.environ.get("MOTHELLO_COMPILE_MODE")))
    first_loss = float(step())   # compiles
    for _ in range(WARMUP - 1):
        step()
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    ours_s = benchmark.stats.stats.median

    ours, baseline = _mfu_figures(config, BATCH, ours_s), _mfu_figures(config, BATCH, baseline_s)
    figures = {
        "device": torch.cuda.get_device_name() if CUDA else "cpu",
        "shape": f"{SHAPE} batch {BATCH} x {T} tokens",
        "tokens_per_s": ours["tokens_per_s"],
        "baseline_tokens_per_s": baseline["tokens_per_s"],
        "speedup_vs_eager_fp32": baseline_s / ours_s,
        "tflops": ours["tflops"],
        "mfu": ours["mfu"],
        "baseline_mfu": baseline["mfu"],
        "first_loss": first_loss,
        "baseline_first_loss": baseline_loss,
    }
    _report(benchmark, figures)
    # the fast step computes the same loss as the reference one on the same initial weights
    # and batch: up to the dropout masks (torch.compile draws its own) and, on CUDA, bf16
    # (measured on CPU: 1e-3 apart, for a loss of ~4.8)
    assert first_loss == pytest.approx(baseline_loss, abs=5e-2 if CUDA else 1e-2)


def _report(benchmark, figures: dict) -> None:
    benchmark.extra_info.update(figures)
    print()
    for key, value in figures.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")


@pytest.mark.skipif(not CUDA, reason="end-to-end training throughput is measured on CUDA")
@pytest.mark.benchmark(group="train")
def test_bench_train_loop_end_to_end(benchmark):
    train_games, val_games = generate_games(200_000, seed=0), generate_games(16, seed=1)
    shape = dict(languages="atomic,atomic", batch_size=BATCH, eval_every=0, eval_games=16,
                 checkpoint_every=0, log_every=20, compile_mode=os.environ.get(
                     "MOTHELLO_COMPILE_MODE"), **SHAPE)
    rates, losses = {}, {}

    def run(name, steps, **options):
        with tempfile.TemporaryDirectory() as out:
            result = train(TrainConfig(max_steps=steps, warmup_steps=10, **shape, **options),
                           train_games=train_games, val_games=val_games, out_dir=out,
                           progress=False)
        rates[name] = [r["tokens_per_s"] for r in result.metrics if "tokens_per_s" in r][-1]
        losses[name] = {r["step"]: r["loss"] for r in result.metrics if "loss" in r}

    run("eager_fp32", 40, compile=False, bf16=False, tf32=False)
    benchmark.pedantic(run, args=("ours", 120), rounds=1, iterations=1)
    flops = flops_per_token(GPTConfig(vocab_size=VOCAB, context_length=T, **SHAPE), T)
    _report(benchmark, {"loop_tokens_per_s": rates["ours"],
                        "loop_baseline_tokens_per_s": rates["eager_fp32"],
                        "loop_speedup_vs_eager_fp32": rates["ours"] / rates["eager_fp32"],
                        "loop_mfu": rates["ours"] * flops / PEAK,
                        "loop_loss_at_40": losses["ours"][40],
                        "loop_baseline_loss_at_40": losses["eager_fp32"][40]})
    # the fast loop trains the same model on the same batches as the reference one: the
    # same loss, up to dropout masks and bf16 (on CPU the compiled and eager loops are
    # 1e-3 apart at step 40), and it keeps learning
    assert losses["ours"][40] == pytest.approx(losses["eager_fp32"][40], abs=0.05)
    assert losses["ours"][120] < losses["ours"][20]


# --------------------------------------------------------------------------- script mode

# Kernel name patterns -> what the time is spent on, for the profile breakdown.
KERNEL_KINDS = (("matmul", ("gemm", "cutlass", "sm90_", "nvjet", "cublas", "triton_tem_")),
                ("attention", ("flash", "fmha", "cudnn", "attn", "attention")),
                ("optimizer", ("adam", "multi_tensor", "foreach")),
                ("fused pointwise / norms (inductor)", ("triton_",)),
                ("copies / fills", ("copy", "fill", "memcpy", "memset")))


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    for kind, patterns in KERNEL_KINDS:
        if any(p in lowered for p in patterns):
            return kind
    return "other"


def profile_breakdown(step, steps: int = 5) -> dict:
    """Device time per step by kernel kind, and the 25 costliest kernels, of a warmed-up
    `step` (one that does not sync)."""
    from torch.profiler import ProfilerActivity, profile
    _sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if CUDA else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync()
    attr = "self_device_time_total" if CUDA else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, attr, 0) > 0 and
              (not CUDA or e.device_type.name == "CUDA")]
    by_kind: dict[str, float] = {}
    for e in events:
        kind = kernel_kind(e.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + getattr(e, attr) / 1e3 / steps  # ms per step
    top = sorted(events, key=lambda e: -getattr(e, attr))[:25]
    return {"ms_per_step_by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            # busy time: a step's ms beyond it is the device waiting for the host
            "busy_ms_per_step": sum(by_kind.values()),
            "kernels_per_step": sum(e.count for e in events) / steps,
            "top_kernels": [(e.key[:90], getattr(e, attr) / 1e3 / steps, e.count // steps)
                            for e in top]}


def sweep(names, *, profile_names=(), out=None) -> dict:
    """One row per variant: ms per step, tokens/s, MFU, speed-up against eager fp32 (per
    token); for the variants in `profile_names`, their `profile_breakdown` and the ms a
    step the device waits. Results are written to `out` (JSON) after every variant, so a
    run cut short keeps what it measured."""
    result: dict = {"rows": [], "profiles": []}
    rows = result["rows"]
    for name in names:
        variant = VARIANTS[name]
        start = time.perf_counter()
        profile = None
        try:
            step, config = _make_step(variant, sync=False)
            seconds = _seconds_per_step(step)
            if name in profile_names:
                profile = {"variant": name, **profile_breakdown(step)}
                result["profiles"].append(profile)
        except Exception as err:  # keep going: one failing variant should not hide the rest
            print(f"{name}: FAILED ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
            traceback.print_exc()
            continue
        row = {"variant": name, "batch": variant["batch"], "ms": seconds * 1e3,
               **_mfu_figures(config, variant["batch"], seconds),
               "setup_s": time.perf_counter() - start - seconds * ROUNDS}
        if profile is not None:
            row["device_idle_ms"] = row["ms"] - profile["busy_ms_per_step"]
        rows.append(row)
        base = next((r for r in rows if r["variant"] == "eager fp32"), None)
        row["speedup_vs_eager_fp32"] = (row["tokens_per_s"] / base["tokens_per_s"] if base
                                        else float("nan"))
        print(f"{name}: {row['ms']:.2f} ms/step, MFU {row['mfu']:.1%}, "
              f"{row['speedup_vs_eager_fp32']:.2f}x eager fp32 (set-up, compile and profile "
              f"{row['setup_s']:.0f} s)")
        sys.stdout.flush()
        if out:
            with open(out, "w") as f:
                json.dump(result, f, indent=1)
        del step
        if CUDA:
            torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="training-step variants: ms, tokens/s, MFU")
    parser.add_argument("--sweep", action="store_true", help="measure the variants")
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--variants", help="comma-separated variant names (default: all)")
    parser.add_argument("--profile", metavar="NAME[,NAME]",
                        help="also print a per-kernel time breakdown of these variants")
    parser.add_argument("--json", metavar="PATH", help="write the results here")
    args = parser.parse_args(argv)
    if args.list or not (args.sweep or args.profile):
        for name, variant in VARIANTS.items():
            print(f"{name}: {variant}")
        return 0
    names = ([n.strip() for n in args.variants.split(",")] if args.variants else list(VARIANTS)
             ) if args.sweep else []
    profiled = [n.strip() for n in args.profile.split(",")] if args.profile else []
    names += [n for n in profiled if n not in names]
    for name in names:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; expected one of {list(VARIANTS)}")
    device = torch.cuda.get_device_name() if CUDA else "cpu"
    print(f"{device}, torch {torch.__version__}, model {SHAPE}, T {T}, peak {PEAK / 1e12:.0f} "
          f"TFLOP/s")
    result = sweep(names, profile_names=profiled, out=args.json)
    for prof in result["profiles"]:
        print(f"\nprofile of {prof['variant']!r}: device busy {prof['busy_ms_per_step']:.3f} ms "
              f"a step, {prof['kernels_per_step']:.0f} kernels; ms per step by kind:")
        for kind, ms in prof["ms_per_step_by_kind"].items():
            print(f"  {kind:<40} {ms:8.3f}")
        print("costliest kernels (ms per step, calls per step):")
        for key, ms, calls in prof["top_kernels"]:
            print(f"  {ms:8.3f} {calls:4d}  {key}")
    if result["rows"]:
        print(f"\ntraining step, {SHAPE}, T {T}")
        print(f"  {'variant':<32}{'batch':>6}{'ms':>9}{'tokens/s':>12}{'TFLOP/s':>9}{'MFU':>7}"
              f"{'vs eager':>9}{'idle ms':>9}")
        for r in result["rows"]:
            idle = f"{r['device_idle_ms']:>9.2f}" if "device_idle_ms" in r else f"{'':>9}"
            print(f"  {r['variant']:<32}{r['batch']:>6}{r['ms']:>9.2f}{r['tokens_per_s']:>12,.0f}"
                  f"{r['tflops']:>9.1f}{r['mfu']:>7.1%}{r['speedup_vs_eager_fp32']:>8.2f}x{idle}")
    return 0 if len(result["rows"]) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
