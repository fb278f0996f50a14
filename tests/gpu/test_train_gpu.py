"""Training on CUDA: compiled + bf16 + fused AdamW learns, matches eager fp32 logits,
resumes along the uninterrupted loss curve (up to non-deterministic kernels), and runs
with every attention backend under torch.compile.

    python -m pytest tests/gpu/test_train_gpu.py -q -s
"""
import shutil

import pytest
import torch

from mothello_fast.checkpoint import load_model
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import generate_games
from mothello_fast.train import TrainConfig, train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def games():
    return generate_games(300_000, seed=31), generate_games(500, seed=32)


def test_compiled_bf16_logits_match_eager_fp32_for_the_default_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=121, context_length=60)).cuda().eval()
    tokens = torch.randint(1, 121, (64, 60), device="cuda")
    with torch.no_grad():
        eager = model(tokens)[0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fast = torch.compile(model)(tokens)[0].float()
    torch.testing.assert_close(fast, eager, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("backend", ["sdpa", "reference", "triton"])
def test_every_attention_backend_compiles_and_matches_reference_logits(backend):
    torch.manual_seed(0)
    config = dict(vocab_size=121, context_length=60, n_layers=2, d_model=128, n_heads=4,
                  d_mlp=512)
    reference = GPT(GPTConfig(**config, attention_backend="reference")).cuda().eval()
    model = GPT(GPTConfig(**config, attention_backend=backend)).cuda().eval()
    model.load_state_dict(reference.state_dict())
    tokens = torch.randint(1, 121, (16, 60), device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(tokens)[0], reference(tokens)[0],
                                   atol=2e-3, rtol=2e-3)


def test_compiled_bf16_training_learns_legal_moves(tmp_path, games):
    # 8 layers, d_model 256, batch 256 games, 1000 steps: about a minute on an H200 with
    # compilation. Untrained models score ~0.05.
    train_games, val_games = games
    config = TrainConfig(languages="atomic,split", n_layers=8, n_heads=8, d_model=256,
                         d_mlp=1024, batch_size=256, lr=1e-3, warmup_steps=50, max_steps=1000,
                         eval_every=1000, eval_games=500, log_every=100, checkpoint_every=0)
    result = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path,
                   progress=False)
    before, after = result.metrics[0], result.metrics[-1]
    print({k: (before[k], after[k]) for k in before if k.startswith("legal_acc")},
          "tokens/s", [r["tokens_per_s"] for r in result.metrics if "tokens_per_s" in r][-1])
    for language in result.language_set.names:
        key = f"legal_acc/{language}"
        assert before[key] < 0.2 and after[key] > 0.5, (key, before[key], after[key])
    model, _ = load_model(result.checkpoint, device="cuda")
    assert next(model.parameters()).is_cuda


def test_resume_on_cuda_follows_the_uninterrupted_curve(tmp_path, games):
    train_games, val_games = games
    config = TrainConfig(languages="atomic,atomic", n_layers=2, n_heads=4, d_model=128,
                         d_mlp=512, batch_size=128, warmup_steps=5, max_steps=40, eval_every=0,
                         eval_games=64, log_every=1, checkpoint_every=20)
    whole = train(config, train_games=train_games, val_games=val_games, out_dir=tmp_path / "a",
                  progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-000040")
    resumed = train(config, train_games=train_games, val_games=val_games,
                    out_dir=tmp_path / "b", resume=True, progress=False)
    a = [r["loss"] for r in whole.metrics if "loss" in r]
    b = [r["loss"] for r in resumed.metrics if "loss" in r]
    assert len(a) == len(b) == 40
    assert a[:20] == b[:20]  # read back from the log
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=2e-3, rtol=2e-3)
