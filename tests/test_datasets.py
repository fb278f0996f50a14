"""Datasets on disk: atomic writes, resume, verification, split and deduplication."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import mothello_fast as mf
from mothello_fast import datasets, storage


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
    _interrupt_after_first_shard(monkeypatch)
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
    train_idx, val_idx = mf.split_games(len(ds), val_fraction=0.1, seed=0)
    whole = np.asarray(ds)
    np.testing.assert_array_equal(train, whole[train_idx])
    np.testing.assert_array_equal(val, whole[val_idx])
    assert train.dtype == val.dtype == whole.dtype


def test_deduplicate_keeps_first_occurrences_in_order():
    games = mf.generate_games(5000, seed=6)
    all_rows = np.concatenate([games, games[::7]])
    unique, index = mf.deduplicate(all_rows, return_index=True)
    seen, expected = set(), []
    for i, row in enumerate(all_rows.tolist()):
        if tuple(row) not in seen:
            seen.add(tuple(row))
            expected.append(i)
    assert index.tolist() == expected
    np.testing.assert_array_equal(unique, all_rows[expected])
    np.testing.assert_array_equal(mf.deduplicate(all_rows), all_rows[expected])


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


# ---- resume, metadata, overwrite ------------------------------------------

def _interrupt_after_first_shard(monkeypatch):
    real = datasets._write_shard

    def fail_after_first(path, games):
        if path.name != "shard-00000.npy":
            raise KeyboardInterrupt
        return real(path, games)

    monkeypatch.setattr(datasets, "_write_shard", fail_after_first)


def test_interrupted_write_of_other_games_of_the_same_length_is_not_resumed(tmp_path, monkeypatch):
    first, other = mf.generate_games(30, seed=1), mf.generate_games(30, seed=2)
    _interrupt_after_first_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        mf.write_games(first, tmp_path / "d", shard_size=10)
    monkeypatch.undo()
    with pytest.raises(mf.DatasetError, match="other parameters"):
        mf.write_games(other, tmp_path / "d", shard_size=10)
    ds = mf.write_games(other, tmp_path / "d", shard_size=10, overwrite=True)
    assert np.array_equal(np.asarray(ds), other)


def test_finished_partial_is_moved_into_place_not_regenerated(tmp_path, monkeypatch):
    real_replace = datasets.replace_directory

    def crash_before_rename(partial, path):
        raise KeyboardInterrupt  # the run dies after its manifest is written

    monkeypatch.setattr(datasets, "replace_directory", crash_before_rename)
    with pytest.raises(KeyboardInterrupt):
        mf.generate_dataset(tmp_path / "d", n_games=30, seed=3, shard_size=10, progress=False)
    monkeypatch.setattr(datasets, "replace_directory", real_replace)
    written = []
    monkeypatch.setattr(datasets, "_write_shard", lambda path, games: written.append(path.name))
    ds = mf.generate_dataset(tmp_path / "d", n_games=30, seed=3, shard_size=10, progress=False)
    assert written == [] and np.array_equal(np.asarray(ds), mf.generate_games(30, seed=3))


@pytest.mark.parametrize("key", ["n_games", "format_version", "shards", "dtype"])
def test_metadata_with_a_reserved_key_is_refused_before_any_write(tmp_path, key):
    with pytest.raises(mf.DatasetError, match=f"reserved.*'{key}'"):
        mf.write_games(mf.generate_games(5, seed=0), tmp_path / "d", metadata={key: 2})
    assert list(tmp_path.iterdir()) == []


def test_metadata_that_is_not_json_is_refused_before_any_write(tmp_path):
    with pytest.raises(mf.DatasetError, match=r"metadata\['run'\] = np.int64\(3\).*JSON"):
        mf.write_games(mf.generate_games(5, seed=0), tmp_path / "d", metadata={"run": np.int64(3)})
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_a_file(tmp_path):
    (tmp_path / "d").write_text("not a dataset")
    games = mf.generate_games(5, seed=0)
    ds = mf.write_games(games, tmp_path / "d", overwrite=True)
    assert np.array_equal(np.asarray(ds), games)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_overwrite_refuses_a_non_empty_directory_that_is_not_a_dataset(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(mf.DatasetError, match="'.*d' is a non-empty directory.*no manifest.json"):
        mf.write_games(mf.generate_games(5, seed=0), tmp_path / "d", overwrite=True)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["notes.txt"]
    assert not (tmp_path / "d.partial").exists()


# ---- indexing ---------------------------------------------------------------

@pytest.fixture(scope="module")
def one_and_three_shards(tmp_path_factory):
    games = mf.generate_games(30, seed=1)
    root = tmp_path_factory.mktemp("shards")
    return games, [mf.write_games(games, root / "one", shard_size=100),
                   mf.write_games(games, root / "three", shard_size=10)]


@pytest.mark.parametrize("index", [(slice(None), 0), (3, 2), ([1, 2], [3, 4]), (slice(5, 25), -1),
                                   (Ellipsis, 0), (np.int64(-1), slice(0, 3))])
def test_tuple_index_picks_games_then_applies_the_rest(one_and_three_shards, index):
    games, datasets_ = one_and_three_shards
    for ds in datasets_:
        got = ds[index]
        assert np.shape(got) == np.shape(games[index]) and np.array_equal(got, games[index])


@pytest.mark.parametrize("index", [-1, np.int64(7), slice(None), slice(2, 29, 3),
                                   slice(None, None, -1), slice(25, 100), slice(20, 10), [],
                                   [4, 1, 4], np.array([[1, 2], [3, 4]]), np.arange(30) % 3 == 0])
def test_game_index_picks_the_games_of_the_array(one_and_three_shards, index):
    games, datasets_ = one_and_three_shards
    for ds in datasets_:
        got = ds[index]
        assert got.dtype == np.int8 and got.shape == games[index].shape
        assert np.array_equal(got, games[index])


@pytest.mark.parametrize("index", [30, -31, [0, 30], np.ones(29, dtype=bool)])
def test_game_index_out_of_range_is_an_index_error(one_and_three_shards, index):
    games, datasets_ = one_and_three_shards
    with pytest.raises(IndexError):
        games[index]
    for ds in datasets_:
        with pytest.raises(IndexError):
            ds[index]


def test_indexing_returns_a_writable_in_memory_array_whatever_the_shards(one_and_three_shards):
    _, datasets_ = one_and_three_shards
    for ds in datasets_:
        for index in (slice(2, 5), 3, [1, 2]):
            got = ds[index]
            assert type(got) is np.ndarray and got.flags.writeable
        assert np.array(ds).flags.writeable and not np.shares_memory(np.array(ds), ds.shards[0])


def test_asarray_without_copy_is_a_view_or_an_error(one_and_three_shards):
    _, (one, three) = one_and_three_shards
    assert np.shares_memory(np.asarray(one, copy=False), one.shards[0])
    with pytest.raises(ValueError, match="copy is needed.*3 shards"):
        np.asarray(three, copy=False)


# ---- manifest entries ------------------------------------------------------

def _rewrite(dataset, manifest):
    """Write `manifest` as a tool would that signs what it writes (its own digest
    recomputed): the checks of its fields are then what stands between it and a load."""
    from mothello_fast.storage import manifest_digest
    manifest["manifest_sha256"] = manifest_digest(manifest, "manifest_sha256")
    (dataset / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("key, value", [("seed", 6), ("prefix", [19]), ("generator", "x")])
def test_an_edited_manifest_is_detected(dataset, key, value):
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest[key] = value
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(mf.DatasetError, match="was edited or is corrupted"):
        mf.load_games(dataset)


def test_a_manifest_from_before_digests_loads_with_a_warning(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    del manifest["manifest_sha256"]
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="has no manifest_sha256"):
        assert len(mf.load_games(dataset)) == manifest["n_games"]


def test_shard_entry_without_its_sha256_is_named(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    del manifest["shards"][1]["sha256"]
    _rewrite(dataset, manifest)
    with pytest.raises(mf.DatasetError, match=r"shards\[1\].*not a valid shard entry"):
        mf.load_games(dataset)


def test_shard_file_outside_the_dataset_is_refused(dataset, tmp_path):
    manifest = json.loads((dataset / "manifest.json").read_text())
    (tmp_path / "other").mkdir()
    (dataset / "shard-00000.npy").rename(tmp_path / "other" / "shard-00000.npy")
    manifest["shards"][0]["file"] = "../other/shard-00000.npy"
    _rewrite(dataset, manifest)
    with pytest.raises(mf.DatasetError, match=r"'\.\./other/shard-00000\.npy' is not a plain file"):
        mf.load_games(dataset)


@pytest.mark.parametrize("order, wrong", [([1, 0, 2], 0), ([0, 0, 2], 1)],
                         ids=["out-of-order", "listed-twice"])
def test_manifest_listing_shards_out_of_order_or_twice_is_refused(dataset, order, wrong):
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["shards"] = [manifest["shards"][i] for i in order]   # each entry valid on its own
    _rewrite(dataset, manifest)
    with pytest.raises(mf.DatasetError, match=rf"shards\[{wrong}\]: file 'shard-0000{order[wrong]}"
                                              rf"\.npy'; expected 'shard-0000{wrong}\.npy'"):
        mf.load_games(dataset)


@pytest.mark.parametrize("verify", [True, False])
def test_shard_with_a_garbled_header_is_named(dataset, verify):
    path = dataset / "shard-00001.npy"
    data = bytearray(path.read_bytes())
    data[10] = ord("'")   # the header's dict no longer parses (numpy raises a TokenError)
    path.write_bytes(bytes(data))
    with pytest.raises(mf.DatasetError, match="shard 'shard-00001.npy'.*corrupted"):
        mf.load_games(dataset, verify=verify)


@pytest.mark.parametrize("key, value, message", [
    ("format_version", "1", "has format version '1'; .* reads version 1"),
    ("format_version", True, "has format version True; .* reads version 1"),
    ("n_games", "300", "shards hold 300 games; the manifest says '300'")])
def test_manifest_count_or_version_of_the_wrong_type_is_named(dataset, key, value, message):
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest[key] = value
    _rewrite(dataset, manifest)
    with pytest.raises(mf.DatasetError, match=message):
        mf.load_games(dataset)


def test_load_games_of_the_current_directory_that_is_no_dataset_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mf.DatasetError, match=r"no dataset at '\.': manifest.json is missing"):
        mf.load_games(".")


@pytest.mark.parametrize("out", [".", ".."])
def test_writing_a_dataset_to_a_path_without_a_name_is_refused_before_any_write(
        tmp_path, monkeypatch, out):
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(mf.DatasetError, match=rf"out='{re.escape(out)}': expected a path that "
                                              "names the dataset directory"):
        mf.write_games(mf.generate_games(5, seed=0), out)
    with pytest.raises(mf.DatasetError, match="names the dataset directory"):
        mf.generate_dataset(out, n_games=5, seed=0, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["here"]
    assert not any((tmp_path / "here").iterdir())


def test_split_of_a_negative_number_of_games_is_refused():
    with pytest.raises(mf.DatasetError, match="n_games=-5"):
        mf.split_games(-5)


@pytest.mark.parametrize("bad, message", [
    (dict(val_fraction=1.5), r"val_fraction=1\.5: expected a number in \[0, 1\]"),
    (dict(val_fraction=float("nan")), r"val_fraction=nan: expected"),
    (dict(val_fraction="0.1"), r"val_fraction='0\.1': expected"),
    (dict(seed=-1), r"seed=-1: expected an integer >= 0"),
    (dict(seed=None), r"seed=None: expected"),    # not a fresh random split each call
    (dict(seed=1.5), r"seed=1\.5: expected")])
def test_split_with_a_bad_fraction_or_seed_is_a_dataset_error(bad, message):
    with pytest.raises(mf.DatasetError, match=message):
        mf.split_games(10, **bad)


@pytest.mark.parametrize("val_fraction, n_val", [(0, 0), (1, 7), (0.5, 4)])
def test_split_at_the_edges_is_still_disjoint_and_complete(val_fraction, n_val):
    train, val = mf.split_games(7, val_fraction=val_fraction, seed=1)
    assert len(val) == n_val and sorted(train.tolist() + val.tolist()) == list(range(7))
    assert train.dtype == val.dtype == np.int64


@pytest.mark.parametrize("flag, value, message", [
    ("--val-fraction", "2", r"--val-fraction 2\.0: expected a number in \[0, 1\]"),
    ("--split-seed", "-1", r"argument --split-seed: '-1' is not an integer >= 0")])
def test_cli_train_bad_split_is_an_error_message_not_a_traceback(dataset, tmp_path, capsys,
                                                                 flag, value, message):
    from mothello_fast.cli import main
    argv = ["train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--quiet", flag, value]
    try:
        code = main(argv)
    except SystemExit as exit_:   # argparse's own check
        code = exit_.code
    assert code == 2 and re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


# ---- atomic writes ------------------------------------------------------------

def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write_bytes(path, b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"] and path.read_bytes() == b"old"


def test_overlapping_writers_of_one_path_do_not_share_a_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    real_fsync, nested = storage.os.fsync, []

    def fsync_with_a_second_writer(fd):   # another writer runs while the first one syncs
        if not nested:
            nested.append(True)
            storage.atomic_write_bytes(path, b"B" * 10)
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync_with_a_second_writer)
    storage.atomic_write_bytes(path, b"A" * 1000)
    assert path.read_bytes() == b"A" * 1000   # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    import os
    path = tmp_path / "f.bin"
    storage.atomic_write_bytes(path, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def _directory_with(path, name):
    path.mkdir()
    (path / name).write_text(name)
    return path


def test_failed_directory_swap_puts_the_old_version_back(tmp_path, monkeypatch):
    old = _directory_with(tmp_path / "d", "old")
    new = _directory_with(tmp_path / "d.partial", "new")
    real, calls = storage.os.replace, []

    def second_rename_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(storage.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="disk gone"):
        storage.replace_directory(new, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.partial"]
    assert [p.name for p in old.iterdir()] == ["old"]


def test_directory_swap_removes_what_a_crashed_swap_left_aside(tmp_path):
    target = _directory_with(tmp_path / "d", "current")
    _directory_with(tmp_path / "d.swap-k3j2x9q1.old", "d")     # a swap that died halfway
    _directory_with(tmp_path / "d.20261201.old", "keep")       # not a swap's name
    storage.replace_directory(_directory_with(tmp_path / "d.partial", "new"), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.20261201.old"]
    assert [p.name for p in target.iterdir()] == ["new"]


def test_interrupted_write_with_tuple_metadata_resumes(tmp_path, monkeypatch):
    games = mf.generate_games(30, seed=3)
    _interrupt_after_first_shard(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        mf.write_games(games, tmp_path / "d", shard_size=10, metadata={"langs": ("a", "b")})
    monkeypatch.undo()
    ds = mf.write_games(games, tmp_path / "d", shard_size=10, metadata={"langs": ("a", "b")})
    assert np.array_equal(np.asarray(ds), games) and ds.manifest["langs"] == ["a", "b"]


# ---- CLI ------------------------------------------------------------------------

@pytest.mark.parametrize("flag, value", [("--games", "0"), ("--seed", "-1"), ("--threads", "0"),
                                         ("--shard-size", "0")])
def test_cli_gen_bad_value_is_an_error_before_any_write(tmp_path, capsys, flag, value):
    from mothello_fast.cli import main
    argv = ["gen", "--games", "10", "--seed", "1", "--out", str(tmp_path / "d"), "--quiet"]
    with pytest.raises(SystemExit) as exit_:
        main(argv + [flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: '{value}' is not " in capsys.readouterr().err   # names the flag
    assert list(tmp_path.iterdir()) == []


def test_cli_interrupted_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from mothello_fast.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "generate_dataset", interrupted)
    assert main(["gen", "--games", "10", "--seed", "1", "--out", str(tmp_path / "d")]) == 130
    assert "interrupted; run the same command again to resume" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [dict(n_games=0), dict(seed=-1), dict(threads=0),
                                 dict(shard_size=0)])
def test_generate_dataset_checks_its_arguments_before_any_write(tmp_path, bad):
    args = dict(n_games=10, seed=1, shard_size=5, threads=None) | bad
    with pytest.raises(mf.MothelloError, match=f"{next(iter(bad))}=-?[0-9]+: expected"):
        mf.generate_dataset(tmp_path / "d", progress=False, **args)
    assert list(tmp_path.iterdir()) == []


# ---- one writer at a time ----------------------------------------------------------

def test_a_second_writer_of_a_dataset_is_refused_while_the_first_holds_its_lock(tmp_path):
    out, games = tmp_path / "d", mf.generate_games(30, seed=1)
    with storage.writer_lock(out):   # as a writer in another process would (flock is per open)
        for write in (lambda: mf.write_games(games, out, shard_size=10),
                      lambda: mf.generate_dataset(out, n_games=30, seed=1, progress=False)):
            with pytest.raises(mf.DatasetError,
                               match=rf"another process \(pid \d+ on .*\) is writing dataset "
                                     rf"'{re.escape(str(out))}'.*'{re.escape(str(out))}\.lock'"
                                     ".*if that process is dead"):
                write()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lock"]   # nothing touched
    ds = mf.write_games(games, out, shard_size=10)   # released: the next writer goes ahead
    assert np.array_equal(np.asarray(ds), games)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]            # the lock is gone
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "shard-00000.npy", "shard-00001.npy", "shard-00002.npy"]


def test_cli_gen_refuses_a_dataset_another_process_is_writing(tmp_path, capsys):
    from mothello_fast.cli import main
    with storage.writer_lock(tmp_path / "d"):
        assert main(["gen", "--games", "10", "--seed", "1", "--out", str(tmp_path / "d"),
                     "--quiet"]) == 2
    assert "another process" in capsys.readouterr().err and not (tmp_path / "d").exists()


_STOPPED_WRITER = """
import sys, time
import mothello_fast as mf
from mothello_fast import datasets
real = datasets._write_shard

def write_then_stop(path, games):
    sha = real(path, games)
    if path.name == "shard-00002.npy":   # written, not yet recorded in progress.json
        print("stopped", flush=True)
        time.sleep(600)
    return sha

datasets._write_shard = write_then_stop
mf.generate_dataset(sys.argv[1], n_games=500, seed=8, shard_size=100, progress=False)
"""


def test_a_writer_killed_mid_run_leaves_no_lock_and_resumes_to_the_same_dataset(
        tmp_path, monkeypatch):
    import signal
    out = tmp_path / "d"
    writer = subprocess.Popen([sys.executable, "-c", _STOPPED_WRITER, str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "stopped\n"
        with pytest.raises(mf.DatasetError,
                           match=rf"pid {writer.pid} .*writing dataset '{re.escape(str(out))}'"):
            mf.generate_dataset(out, n_games=500, seed=8, shard_size=100, progress=False)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.lock", "d.partial"]   # unlocked
    (tmp_path / "d.partial" / "shard-00003.npy.0123456789ab.tmp").write_bytes(b"cut short")
    written, real = [], datasets._write_shard
    monkeypatch.setattr(datasets, "_write_shard",
                        lambda path, games: (written.append(path.name), real(path, games))[1])
    ds = mf.generate_dataset(out, n_games=500, seed=8, shard_size=100, progress=False)
    assert written == ["shard-00002.npy", "shard-00003.npy", "shard-00004.npy"]
    whole = mf.generate_dataset(tmp_path / "whole", n_games=500, seed=8, shard_size=100,
                                progress=False)
    assert np.array_equal(np.asarray(ds), np.asarray(whole))
    assert ds.manifest["shards"] == whole.manifest["shards"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "whole"]   # no lock, no .partial


def test_writer_lock_retries_when_the_holder_removed_the_file_it_opened(tmp_path, monkeypatch):
    import fcntl
    real, calls = fcntl.flock, []

    def flock_after_the_holder_left(fd, operation):
        if not calls:   # the previous holder finishes between our open and our flock
            calls.append(fd)
            os.unlink(tmp_path / "d.lock")
        return real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_left)
    with storage.writer_lock(tmp_path / "d") as lock:
        monkeypatch.undo()
        with pytest.raises(OSError, match="another process"):   # it holds the file at the name
            with storage.writer_lock(tmp_path / "d"):
                pass
    assert calls and not lock.exists()


def test_writer_lock_on_a_file_system_without_flock_warns_and_writes(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, operation):   # as on an NFS mount without lockd, or Lustre's noflock
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    games = mf.generate_games(30, seed=1)
    with pytest.warns(RuntimeWarning, match=r"cannot lock .*d\.lock.*writing dataset .* unlocked"):
        ds = mf.write_games(games, tmp_path / "d", shard_size=10)
    assert np.array_equal(np.asarray(ds), games)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_writer_lock_stays_with_the_parent_when_a_child_forked_inside_it_leaves(tmp_path):
    held = storage.writer_lock(tmp_path / "d")
    lock = held.__enter__()
    pid = os.fork()
    if pid == 0:   # the child unwinds the block (as forked code returning would) and exits
        try:
            held.__exit__(None, None, None)
        finally:
            os._exit(0)
    try:
        os.waitpid(pid, 0)
        assert lock.exists()   # still the parent's: a second writer is refused
        with pytest.raises(OSError, match="another process"):
            with storage.writer_lock(tmp_path / "d"):
                pass
    finally:
        held.__exit__(None, None, None)
    assert not lock.exists()
