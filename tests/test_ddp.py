"""Data-parallel training: two gloo CPU processes launched by torchrun train the same
model as one process on the same global batch (dropout off, so the only difference
is the order of floating-point sums), and a two-process run resumed from a
checkpoint written mid log window logs what the uninterrupted run logs (oracle: the
uninterrupted run, and the per-rank losses each worker records)."""
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

import mothello_fast.train as train_module
from mothello_fast.checkpoint import load_checkpoint, load_model
from mothello_fast.othello import generate_games
from mothello_fast.train import TrainConfig, train

CONFIG = dict(languages="atomic,split", n_layers=1, n_heads=2, d_model=32, d_mlp=64,
              dropout=0.0, batch_size=16, warmup_steps=2, max_steps=4, eval_every=0,
              eval_games=8, log_every=1, checkpoint_every=0, compile=False, device="cpu", seed=4)

WORKER = textwrap.dedent("""
    import functools, json, os, sys
    import numpy as np
    import torch.nn.parallel
    import mothello_fast.train as train_module
    from mothello_fast.train import TrainConfig, train

    losses, real_step = [], train_module.train_step

    def recording_step(*args, **kwargs):  # this rank's loss (as summed into its window)
        loss, grad_norm = real_step(*args, **kwargs)
        losses.append(loss.item())
        return loss, grad_norm

    train_module.train_step = recording_step

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
                   out_dir=sys.argv[4], progress=False, resume=sys.argv[5:] == ["resume"])
    with open(sys.argv[4] + f".rank{os.environ['RANK']}.json", "w") as f:
        json.dump({"rank": result.rank, "n_metrics": len(result.metrics), "losses": losses}, f)
""")


def torchrun(directory, config, out_dir, *, resume=False):
    """Run WORKER in two gloo processes on directory's train.npy / val.npy into out_dir."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node", "2", str(directory / "worker.py"), json.dumps(config),
              str(directory / "train.npy"), str(directory / "val.npy"), str(out_dir)]
    done = subprocess.run(launch + (["resume"] if resume else []), capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def prepare(directory):
    """Write the games and the worker into directory; returns (train_games, val_games)."""
    train_games, val_games = generate_games(500, seed=1), generate_games(8, seed=2)
    np.save(directory / "train.npy", train_games)
    np.save(directory / "val.npy", val_games)
    (directory / "worker.py").write_text(WORKER)
    return train_games, val_games


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """A 4-step run of two gloo processes under torchrun: (its directory, the games)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    train_games, val_games = prepare(tmp_path)
    torchrun(tmp_path, CONFIG, tmp_path / "ddp")
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


# ---- resuming from a checkpoint written mid log window ---------------------------------
# logs at steps 4, 8, 10; checkpoints at 6 (steps 5 and 6 not logged yet) and 10; dropout
# on, seeded per rank and step
MID_WINDOW = {**CONFIG, "max_steps": 10, "log_every": 4, "checkpoint_every": 6,
              "dropout": 0.1}


@pytest.fixture(scope="module")
def mid_window_run(tmp_path_factory):
    """An uninterrupted 10-step two-process run, and a copy of it cut back to its step-6
    checkpoint, as an interruption before step 10 leaves it: (whole, cut, games)."""
    tmp_path = tmp_path_factory.mktemp("mid_window")
    games = prepare(tmp_path)
    torchrun(tmp_path, MID_WINDOW, tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "step-000010")
    return tmp_path / "whole", tmp_path / "cut", games


def logged(run):
    """The training records of run's metrics.jsonl, without the timing."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in records if "loss" in r]


def rank_losses(run):
    """Each rank's recorded losses, step by step (0-based from the run's first step)."""
    return [json.loads(run.with_name(f"{run.name}.rank{r}.json").read_text())["losses"]
            for r in (0, 1)]


def test_checkpoint_mid_window_holds_each_process_loss_sum(mid_window_run):
    whole, cut, _ = mid_window_run
    window = load_checkpoint(cut / "checkpoints" / "step-000006").extra["loss_window"]
    # steps 5 and 6 (0-based 4 and 5) are not logged yet: rank r's float32 sum of them
    expected = [float(np.float32(losses[4]) + np.float32(losses[5]))
                for losses in rank_losses(whole)]
    assert window == {"steps": 2, "sums": expected}
    assert expected[0] != expected[1]   # the ranks train on different halves of the batch
    final = load_checkpoint(whole / "checkpoints" / "step-000010").extra["loss_window"]
    assert final == {"steps": 0, "sums": [0.0]}   # logged at the last step: nothing pending


def test_two_process_run_resumed_mid_window_logs_the_uninterrupted_metrics(mid_window_run,
                                                                           tmp_path):
    whole, cut, _ = mid_window_run
    shutil.copytree(cut, tmp_path / "resumed")
    torchrun(cut.parent, MID_WINDOW, tmp_path / "resumed", resume=True)
    expected = logged(whole)
    assert [r["step"] for r in expected] == [4, 8, 10]
    assert logged(tmp_path / "resumed") == expected   # loss, lr, grad_norm: exactly
    assert [len(losses) for losses in rank_losses(tmp_path / "resumed")] == [4, 4]
    resumed_model, _ = load_model(tmp_path / "resumed" / "checkpoints" / "step-000010")
    whole_model, _ = load_model(whole / "checkpoints" / "step-000010")
    for (name, a), b in zip(whole_model.state_dict().items(),
                            resumed_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_two_process_run_resumed_mid_window_in_one_process_starts_from_the_mean_sum(
        mid_window_run, tmp_path, monkeypatch):
    whole, cut, (train_games, val_games) = mid_window_run
    shutil.copytree(cut, tmp_path / "resumed")
    losses, real_step = [], train_module.train_step

    def recording_step(*args, **kwargs):
        loss, grad_norm = real_step(*args, **kwargs)
        losses.append(loss.item())
        return loss, grad_norm

    monkeypatch.setattr(train_module, "train_step", recording_step)
    with pytest.warns(UserWarning, match="number of processes 2, this run uses 1"):
        resumed = train(TrainConfig(**MID_WINDOW), train_games=train_games,
                        val_games=val_games, out_dir=tmp_path / "resumed", resume=True,
                        progress=False)
    records = [{k: v for k, v in r.items() if k != "tokens_per_s"}
               for r in resumed.metrics if "loss" in r]
    assert records == logged(tmp_path / "resumed")
    assert [r["step"] for r in records] == [4, 8, 10] and len(losses) == 4
    assert records[0] == logged(whole)[0]   # logged before the checkpoint: kept
    # steps 5, 6: the mean of the two processes' sums (their all-reduce), then steps 7, 8
    # of this process
    sums = [np.float32(r[4]) + np.float32(r[5]) for r in rank_losses(whole)]
    pending = (float(sums[0]) + float(sums[1])) / 2
    assert records[1]["loss"] == pytest.approx((pending + losses[0] + losses[1]) / 4, rel=1e-6)
    assert records[2]["loss"] == pytest.approx((losses[2] + losses[3]) / 2, rel=1e-6)
    assert [r["lr"] for r in records] == [r["lr"] for r in logged(whole)]


CELL_WORKER = textwrap.dedent("""
    import json, sys
    from mothello_fast.cell import StudyScale, run_cell
    sizes = StudyScale(**json.loads(sys.argv[1]))
    run_cell(setting="naive", seed=0, scale=sizes, out_dir=sys.argv[2], device="cpu",
             threads=1, transfer=sys.argv[3] == "transfer", progress=False)
""")


def test_a_cell_under_torchrun_trains_on_every_rank_and_resumes_without_waiting(tmp_path):
    """Rank 0 analyses; the others train with it, in one process group for the cell. Run
    again (the cell finished, then with transfer added, then finished again), every rank
    skips what rank 0 skips: no rank waits for a run, or a group, that another never
    starts (the launch would time out instead)."""
    import dataclasses

    from test_study import MICRO

    sizes = dataclasses.replace(MICRO, batch_size=8, max_steps=8, warmup_steps=1,
                                eval_every=4, checkpoint_every=4, pretrain_steps=4,
                                finetune_steps=2, n_evaluations=1)
    (tmp_path / "cell.py").write_text(CELL_WORKER)

    def launch(transfer: str) -> None:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "2", str(tmp_path / "cell.py"),
                   json.dumps(dataclasses.asdict(sizes)), str(tmp_path / "out"), transfer]
        done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-3000:]

    launch("no-transfer")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["transfer_status"] == "skipped"
    assert json.loads((tmp_path / "out" / "model" / "config.json").read_text())[
        "world_size"] == 2
    stamp = (tmp_path / "out" / "results.json").stat().st_mtime_ns
    launch("no-transfer")                      # finished: every rank returns at once
    assert (tmp_path / "out" / "results.json").stat().st_mtime_ns == stamp
    launch("transfer")                         # training done: only transfer runs, on both
    assert json.loads((tmp_path / "out" / "results.json").read_text())[
        "transfer_status"] == "done"
    stamp = (tmp_path / "out" / "results.json").stat().st_mtime_ns
    launch("transfer")                         # all done: every rank returns at once
    assert (tmp_path / "out" / "results.json").stat().st_mtime_ns == stamp
