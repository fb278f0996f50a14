"""Datasets on disk: atomic writes, resume, verification, split and deduplication."""
import json
import subprocess
import sys

import numpy as np
import pytest

import mothello_fast as mf
from mothello_fast import datasets


def test_generate_dataset_equals_generate_games(tmp_path):
    ds = mf.generate_dataset(tmp_path / "d", n_games=2500, seed=4, shard_size=1000, progress=False)
    assert len(ds) == 2500 and len(ds.shards) == 3
    assert np.array_equal(np.asarray(ds), mf.generate_games(2500, seed=4))
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["n_games"] == 2500 and manifest["format_version"] == 1
    assert [s["n_games"] for s in manifest["shards"]] == [1000, 1000, 500]
    assert all(len(s["sha256"]) == 64 for s in manifest["shards"])
    assert not (tmp_path / "d.partial").exists()


def test_dataset_indexing_across_shards(tmp_path):
    ds = mf.generate_dataset(tmp_path / "d", n_games=2500, seed=4, shard_size=1000, progress=False)
    whole = np.asarray(ds)
    rows = np.array([0, 999, 1000, 2499, 5, 1500])
    assert np.array_equal(ds[rows], whole[rows])
    assert np.array_equal(ds[990:1010], whole[990:1010])
    assert np.array_equal(ds[-1], whole[-1])
    assert isinstance(ds.shards[0], np.memmap)


def test_prefix_is_recorded_and_applied(tmp_path):
    ds = mf.generate_dataset(tmp_path / "d", n_games=50, seed=1, prefix="c4,c3,c2", progress=False)
    assert ds.manifest["prefix"] == [19, 18, 17] and (np.asarray(ds)[:, :3] == [19, 18, 17]).all()


def test_existing_dataset_is_refused_unless_overwrite(tmp_path):
    mf.generate_dataset(tmp_path / "d", n_games=10, seed=1, progress=False)
    with pytest.raises(mf.DatasetError, match="already exists"):
        mf.generate_dataset(tmp_path / "d", n_games=10, seed=2, progress=False)
    ds = mf.generate_dataset(tmp_path / "d", n_games=10, seed=2, overwrite=True, progress=False)
    assert np.array_equal(np.asarray(ds), mf.generate_games(10, seed=2))


def test_interrupted_generation_resumes_to_the_same_dataset(tmp_path, monkeypatch):
    calls = []
    real = datasets._write_shard

    def failing_write(path, games):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the run dies while writing the third shard
        calls.append(path.name)
        return real(path, games)

    monkeypatch.setattr(datasets, "_write_shard", failing_write)
    with pytest.raises(KeyboardInterrupt):
        mf.generate_dataset(tmp_path / "d", n_games=500, seed=8, shard_size=100, progress=False)
    assert not (tmp_path / "d").exists()  # cleanly absent, never half-present
    with pytest.raises(mf.DatasetError, match="unfinished generation.*resume"):
        mf.load_games(tmp_path / "d")
    monkeypatch.setattr(datasets, "_write_shard", lambda p, g: (calls.append(p.name), real(p, g))[1])
    ds = mf.generate_dataset(tmp_path / "d", n_games=500, seed=8, shard_size=100, progress=False)
    assert calls == ["shard-00000.npy", "shard-00001.npy", "shard-00002.npy",
                     "shard-00003.npy", "shard-00004.npy"]  # the first two were not rewritten
    assert np.array_equal(np.asarray(ds), mf.generate_games(500, seed=8))


def test_interrupted_generation_with_other_parameters_is_not_mixed_in(tmp_path, monkeypatch):
    real = datasets._write_shard

    def fail_after_first(path, games):
        if path.name != "shard-00000.npy":
            raise KeyboardInterrupt
        return real(path, games)

    monkeypatch.setattr(datasets, "_write_shard", fail_after_first)
    with pytest.raises(KeyboardInterrupt):
        mf.generate_dataset(tmp_path / "d", n_games=300, seed=1, shard_size=100, progress=False)
    monkeypatch.undo()
    with pytest.raises(mf.DatasetError, match="other parameters"):
        mf.generate_dataset(tmp_path / "d", n_games=300, seed=2, shard_size=100, progress=False)


@pytest.fixture
def dataset(tmp_path):
    mf.generate_dataset(tmp_path / "d", n_games=300, seed=5, shard_size=100, progress=False)
    return tmp_path / "d"


def test_missing_shard_is_named(dataset):
    (dataset / "shard-00001.npy").unlink()
    with pytest.raises(mf.DatasetError, match="shard 'shard-00001.npy'.*missing"):
        mf.load_games(dataset)


def test_truncated_shard_is_named(dataset):
    path = dataset / "shard-00002.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(mf.DatasetError, match="shard 'shard-00002.npy'.*truncated"):
        mf.load_games(dataset, verify=False)  # found even without the checksum


def test_corrupted_shard_is_named(dataset):
    path = dataset / "shard-00000.npy"
    data = bytearray(path.read_bytes())
    data[-100] = (data[-100] + 1) % 128
    path.write_bytes(bytes(data))
    with pytest.raises(mf.DatasetError, match="shard 'shard-00000.npy'.*sha256"):
        mf.load_games(dataset)


def test_corrupted_manifest_is_named(dataset):
    (dataset / "manifest.json").write_text("{not json")
    with pytest.raises(mf.DatasetError, match="manifest.*not a valid"):
        mf.load_games(dataset)


def test_write_games_round_trip(tmp_path):
    games = mf.generate_games(250, seed=2)
    ds = mf.write_games(games, tmp_path / "w", shard_size=100, metadata={"source": "test"})
    assert np.array_equal(np.asarray(mf.load_games(tmp_path / "w")), games)
    assert ds.manifest["source"] == "test"


def test_split_is_seeded_disjoint_and_complete():
    train, val = mf.split_games(1000, val_fraction=0.2, seed=3)
    assert len(val) == 200 and len(train) == 800
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(1000))
    again = mf.split_games(1000, val_fraction=0.2, seed=3)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(mf.split_games(1000, val_fraction=0.2, seed=4)[1], val)
    assert not np.array_equal(val, np.arange(800, 1000))  # random, not the last rows


def test_dataset_split_returns_games(dataset):
    ds = mf.load_games(dataset)
    train, val = ds.split(val_fraction=0.1, seed=0)
    assert train.shape == (270, 60) and val.shape == (30, 60)
    rows = {tuple(r) for r in np.asarray(ds).tolist()}
    assert all(tuple(r) in rows for r in val.tolist())


def test_deduplicate_keeps_first_occurrences_in_order():
    games = mf.generate_games(5000, seed=6)
    unique, index = mf.deduplicate(np.concatenate([games, games[::7]]), return_index=True)
    seen, expected = set(), []
    for i, row in enumerate(np.concatenate([games, games[::7]]).tolist()):
        if tuple(row) not in seen:
            seen.add(tuple(row))
            expected.append(i)
    assert index.tolist() == expected
    assert len(unique) == len(seen)


def test_cli_gen_writes_a_dataset(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "mothello_fast.cli", "gen", "--games", "1200",
                             "--seed", "9", "--out", str(out), "--shard-size", "500",
                             "--prefix", "c4,c3", "--threads", "2", "--quiet"],
                            capture_output=True, text=True, check=True)
    assert "wrote 1200 games in 3 shard(s)" in result.stdout
    assert np.array_equal(np.asarray(mf.load_games(out)), mf.generate_games(1200, seed=9, prefix="c4 c3"))
    again = subprocess.run([sys.executable, "-m", "mothello_fast.cli", "gen", "--games", "10",
                            "--seed", "9", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
