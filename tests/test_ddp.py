"""Data-parallel training: two gloo CPU processes launched by torchrun train the same
model as one process on the same global batch (dropout off, so the only difference
is the order of floating-point sums)."""
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mothello_fast.checkpoint import load_model
from mothello_fast.othello import generate_games
from mothello_fast.train import TrainConfig, train

CONFIG = dict(languages="atomic,split", n_layers=1, n_heads=2, d_model=32, d_mlp=64,
              dropout=0.0, batch_size=16, warmup_steps=2, max_steps=4, eval_every=0,
              eval_games=8, log_every=1, checkpoint_every=0, compile=False, device="cpu", seed=4)

WORKER = textwrap.dedent("""
    import functools, json, os, sys
    import numpy as np
    import torch.nn.parallel
    from mothello_fast.train import TrainConfig, train

    class RecordingDDP(torch.nn.parallel.DistributedDataParallel):
        @functools.wraps(torch.nn.parallel.DistributedDataParallel.__init__)  # its signature
        def __init__(self, *args, **kwargs):  # rank 0 writes the keyword arguments it got
            if os.environ["RANK"] == "0":
                with open(sys.argv[4] + ".ddp_kwargs.json", "w") as f:
                    json.dump({k: v for k, v in kwargs.items() if k != "device_ids"}, f)
            super().__init__(*args, **kwargs)

    torch.nn.parallel.DistributedDataParallel = RecordingDDP
    config = TrainConfig(**json.loads(sys.argv[1]))
    result = train(config, train_games=np.load(sys.argv[2]), val_games=np.load(sys.argv[3]),
                   out_dir=sys.argv[4], progress=False)
    with open(sys.argv[4] + f".rank{os.environ['RANK']}.json", "w") as f:
        json.dump({"rank": result.rank, "n_metrics": len(result.metrics)}, f)
""")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 4-step run of two gloo processes under torchrun: (its directory, the games)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    train_games, val_games = generate_games(500, seed=1), generate_games(8, seed=2)
    np.save(tmp_path / "train.npy", train_games)
    np.save(tmp_path / "val.npy", val_games)
    (tmp_path / "worker.py").write_text(WORKER)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2", str(tmp_path / "worker.py"), json.dumps(CONFIG),
              str(tmp_path / "train.npy"), str(tmp_path / "val.npy"), str(tmp_path / "ddp")]
    done = subprocess.run(launch, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / "ddp", train_games, val_games


def test_two_gloo_processes_match_one_process_on_the_global_batch(ddp_run, tmp_path):
    run, train_games, val_games = ddp_run
    assert json.loads((run / "config.json").read_text())["world_size"] == 2

    single = train(TrainConfig(**CONFIG), train_games=train_games, val_games=val_games,
                   out_dir=tmp_path / "single", progress=False)
    ddp_model, _ = load_model(run / "checkpoints" / "step-000004")
    single_state, ddp_state = single.model.state_dict(), ddp_model.state_dict()
    assert list(ddp_state) == list(single_state)   # no "module." prefix, nothing missing
    for name, a in single_state.items():
        torch.testing.assert_close(ddp_state[name], a, atol=2e-6, rtol=1e-5, msg=name)
    ddp_losses = [json.loads(line)["loss"] for line in
                  (run / "metrics.jsonl").read_text().splitlines()
                  if "loss" in json.loads(line)]
    single_losses = [r["loss"] for r in single.metrics if "loss" in r]
    np.testing.assert_allclose(ddp_losses, single_losses, rtol=1e-5)
    assert len(single_losses) == 4


def test_ddp_does_not_broadcast_the_constant_position_buffer(ddp_run):
    run, _, _ = ddp_run
    kwargs = json.loads((run.parent / "ddp.ddp_kwargs.json").read_text())
    # torch >= 2.13 renames broadcast_buffers to forward_sync_buffers
    name = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(
        torch.nn.parallel.DistributedDataParallel.__init__).parameters else "broadcast_buffers"
    assert kwargs == {name: False}


def test_resuming_a_two_process_run_in_one_process_warns(ddp_run, tmp_path):
    run, train_games, val_games = ddp_run
    shutil.copytree(run, tmp_path / "run")
    with pytest.warns(UserWarning, match="number of processes 2, this run uses 1"):
        train(TrainConfig(**CONFIG), train_games=train_games, val_games=val_games,
              out_dir=tmp_path / "run", resume=True, progress=False)


def test_each_process_knows_its_rank_and_only_rank_zero_logs(ddp_run):
    run, _, _ = ddp_run
    seen = [json.loads(run.with_name(f"ddp.rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["rank"] for s in seen] == [0, 1]
    logged = (run / "metrics.jsonl").read_text().splitlines()
    assert seen[0]["n_metrics"] == len(logged) > 0 and seen[1]["n_metrics"] == 0
