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
"""
import os
import tempfile
import time
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


def _make_step(*, fast: bool):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=VOCAB, context_length=T, dropout=0.1, **SHAPE)
    model = GPT(config).to(DEVICE).train()
    optimizer = make_optimizer(model, TrainConfig(), fused=fast and CUDA)
    g = torch.Generator(device=DEVICE).manual_seed(1)
    tokens = torch.randint(1, VOCAB, (BATCH, T), device=DEVICE, generator=g)
    targets = torch.randint(1, VOCAB, (BATCH, T), device=DEVICE, generator=g)
    step_model = torch.compile(model, mode=os.environ.get("MOTHELLO_COMPILE_MODE")) if fast \
        else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if fast and CUDA else nullcontext()

    def step():
        loss, _ = train_step(step_model, optimizer, tokens, targets, autocast=autocast,
                             grad_clip=1.0)
        _sync()
        return loss

    return step, config


def _set_tf32(allowed: bool) -> None:
    if CUDA:
        torch.backends.cuda.matmul.allow_tf32 = allowed
        torch.backends.cudnn.allow_tf32 = allowed


def _seconds_per_step(step) -> float:
    for _ in range(WARMUP):
        step()
    start = time.perf_counter()
    for _ in range(ROUNDS):
        step()
    return (time.perf_counter() - start) / ROUNDS


@pytest.mark.benchmark(group="train")
def test_bench_train_step_compiled_vs_eager_fp32(benchmark):
    _set_tf32(False)
    baseline_step, config = _make_step(fast=False)
    baseline_s = _seconds_per_step(baseline_step)
    del baseline_step

    _set_tf32(True)
    step, _ = _make_step(fast=True)
    for _ in range(WARMUP):  # compiles
        step()
    benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    ours_s = benchmark.stats.stats.median

    tokens = BATCH * T
    flops = flops_per_token(config, T) * tokens
    figures = {
        "device": torch.cuda.get_device_name() if CUDA else "cpu",
        "shape": f"{SHAPE} batch {BATCH} x {T} tokens",
        "tokens_per_s": tokens / ours_s,
        "baseline_tokens_per_s": tokens / baseline_s,
        "speedup_vs_eager_fp32": baseline_s / ours_s,
        "tflops": flops / ours_s / 1e12,
        "mfu": flops / ours_s / PEAK,
        "baseline_mfu": flops / baseline_s / PEAK,
    }
    _report(benchmark, figures)
    assert figures["speedup_vs_eager_fp32"] > 0


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
    rates = {}

    def run(name, steps, **options):
        with tempfile.TemporaryDirectory() as out:
            result = train(TrainConfig(max_steps=steps, warmup_steps=10, **shape, **options),
                           train_games=train_games, val_games=val_games, out_dir=out,
                           progress=False)
        rates[name] = [r["tokens_per_s"] for r in result.metrics if "tokens_per_s" in r][-1]

    run("eager_fp32", 40, compile=False, bf16=False, tf32=False)
    benchmark.pedantic(run, args=("ours", 120), rounds=1, iterations=1)
    flops = flops_per_token(GPTConfig(vocab_size=VOCAB, context_length=T, **SHAPE), T)
    _report(benchmark, {"loop_tokens_per_s": rates["ours"],
                        "loop_baseline_tokens_per_s": rates["eager_fp32"],
                        "loop_speedup_vs_eager_fp32": rates["ours"] / rates["eager_fp32"],
                        "loop_mfu": rates["ours"] * flops / PEAK})
    assert rates["ours"] > 0
