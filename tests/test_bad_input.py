"""Bad input across the public API gets the toolkit's named error (a ValueError subclass)
naming the value and what was expected, and nothing that is not the toolkit's own is
replaced: one representative case of each kind a fuzz sweep of the API found."""
import json

import numpy as np
import pytest
import torch

import mothello_fast as mf
from mothello_fast.errors import (CheckpointError, ConceptError, ConfigError, DatasetError,
                                  LanguageError, MothelloError, ProbeError)
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig


@pytest.fixture(scope="module")
def small():
    ls = LanguageSet.from_spec("atomic,split")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=ls.vocab_size, context_length=ls.context_length,
                          n_layers=1, n_heads=2, d_model=16, d_mlp=32)).eval()
    games = mf.generate_games(4, seed=0)
    tokens = torch.as_tensor(ls.encode(games, "L0").tokens)
    return ls, model, games, tokens


def _raises(error, match, call):
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, ValueError)


# --- paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [None, 5, ""])
def test_a_path_that_is_no_path_is_named(small, path, tmp_path):
    ls, model, games, _ = small
    calls = [(CheckpointError, lambda: mf.save_checkpoint(path, model=model, language_set=ls)),
             (CheckpointError, lambda: mf.load_model(path)),
             (DatasetError, lambda: mf.write_games(games, path)),
             (DatasetError, lambda: mf.load_activations(path)),
             (LanguageError, lambda: ls.save(path)),
             (LanguageError, lambda: LanguageSet.load(path)),
             (ProbeError, lambda: mf.load_probe(path))]
    for error, call in calls:
        _raises(error, "expected a path|expected a dataset directory", call)


def test_nothing_but_a_checkpoint_is_replaced_by_a_checkpoint(small, tmp_path):
    ls, model, games, _ = small
    dataset = mf.write_games(games, tmp_path / "data").path
    (tmp_path / "notes.txt").write_text("mine")
    for target in (dataset, tmp_path / "notes.txt"):
        _raises(CheckpointError, "refusing to replace it",
                lambda: mf.save_checkpoint(target, model=model, language_set=ls))
    assert (tmp_path / "notes.txt").read_text() == "mine" and mf.load_games(dataset) is not None
    mf.save_checkpoint(tmp_path / "ck", model=model, language_set=ls)
    mf.save_checkpoint(tmp_path / "ck", model=model, language_set=ls, step=1)   # its own: fine
    assert mf.load_checkpoint(tmp_path / "ck").step == 1


def test_a_collection_is_not_written_into_a_checkpoint_or_a_dataset(small, tmp_path):
    ls, model, games, _ = small
    mf.save_checkpoint(tmp_path / "ck", model=model, language_set=ls)
    collection = mf.collect_parallel(model, ls, games, layers=[1], progress=False)
    for target in (tmp_path / "ck", mf.write_games(games, tmp_path / "data").path):
        before = sorted(p.name for p in target.iterdir())
        _raises(DatasetError, "refusing to replace it", lambda: collection.save(target))
        assert sorted(p.name for p in target.iterdir()) == before


def test_pruning_to_a_negative_count_is_refused(tmp_path):
    from mothello_fast.checkpoint import prune_checkpoints

    (tmp_path / "step-000001").mkdir()
    _raises(CheckpointError, "keep=-1", lambda: prune_checkpoints(tmp_path, -1))
    assert (tmp_path / "step-000001").exists()


# --- garbage on disk -----------------------------------------------------------------------

def test_a_probe_file_that_is_not_one_is_named(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01not safetensors")
    _raises(ProbeError, "not a readable probe file", lambda: mf.load_probe(tmp_path / "garbage.bin"))
    _raises(ProbeError, "not a readable probe file", lambda: mf.load_probe(tmp_path))
    save_file({"mean": torch.zeros(3)}, str(tmp_path / "half.safetensors"),
              metadata={"format": "mothello-probe/1", "class": "LinearProbe", "params": "{}"})
    _raises(ProbeError, "not a complete LinearProbe",
            lambda: mf.load_probe(tmp_path / "half.safetensors"))


def test_an_activation_index_without_its_fields_is_named(small, tmp_path):
    ls, model, games, _ = small
    mf.collect_parallel(model, ls, games, layers=[1], progress=False).save(tmp_path / "acts")
    index = json.loads((tmp_path / "acts" / "index.json").read_text())
    for broken in ({k: v for k, v in index.items() if k != "layers"}, {**index, "layers": [[0]]}):
        (tmp_path / "acts" / "index.json").write_text(json.dumps(broken))
        _raises(DatasetError, "layers", lambda: mf.load_activations(tmp_path / "acts"))


def test_a_checkpoint_s_broken_optimizer_record_is_named(small, tmp_path):
    from mothello_fast.checkpoint import _manifest_digest

    ls, model, _, _ = small
    optimizer = torch.optim.AdamW(model.parameters())
    path = mf.save_checkpoint(tmp_path / "ck", model=model, language_set=ls, optimizer=optimizer)
    manifest = json.loads((path / "checkpoint.json").read_text())
    manifest["optimizer"] = {}
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (path / "checkpoint.json").write_text(json.dumps(manifest))
    _raises(CheckpointError, "optimizer state that does not read back",
            lambda: mf.load_checkpoint(path))


# --- objects of the wrong kind ---------------------------------------------------------------

def test_the_model_names_bad_tokens_targets_and_hooks(small):
    _, model, _, tokens = small
    for bad, match in ((None, "tokens=NoneType"), (tokens.numpy(), "tokens=ndarray"),
                       (tokens.float(), "dtype torch.float32"),
                       (tokens[:, :0], r"shape \(4, 0\)")):
        _raises(MothelloError, match, lambda: model(bad))
    _raises(MothelloError, "target 999 is outside", lambda: model(tokens, torch.full_like(tokens, 999)))
    _raises(MothelloError, "targets of dtype", lambda: model(tokens, tokens.float()))
    _raises(MothelloError, "fwd_hooks=None", lambda: model.run_with_hooks(tokens, None))
    _raises(MothelloError, r"a \(name, function\) pair",
            lambda: model.run_with_hooks(tokens, [("hook_embed",)]))
    _raises(MothelloError, "names_filter item 5", lambda: model.run_with_cache(tokens, [5]))
    _raises(MothelloError, "expected a GPTConfig", lambda: GPT({"vocab_size": 5}))
    _raises(MothelloError, "expected a mapping", lambda: GPTConfig.from_dict(None))


def test_a_model_too_large_for_memory_is_refused_before_it_is_built():
    _raises(MothelloError, "more than the",
            lambda: GPT(GPTConfig(vocab_size=8, context_length=8, n_layers=10**7, n_heads=2,
                                  d_model=16)))


def test_what_is_not_a_language_set_or_a_collection_is_named(small):
    ls, model, games, _ = small
    _raises(LanguageError, "expected a LanguageSet",
            lambda: mf.legal_move_accuracy(model, None, games, language="L0"))
    _raises(LanguageError, "expected a LanguageSet",
            lambda: mf.collect_parallel(model, {}, games, progress=False))
    for call in (lambda: mf.align(None), lambda: mf.probe_activations(5),
                 lambda: mf.concept_metrics("acts")):
        _raises(ProbeError, "expected a ParallelActivations", call)
    _raises(LanguageError, "expected the Encoded", lambda: ls.make_targets(games))
    _raises(LanguageError, "expected a language name or a list", lambda: ls.select_languages(5))
    _raises(LanguageError, "non-empty sequence of Language", lambda: LanguageSet(None))
    _raises(LanguageError, "expected a str", lambda: LanguageSet.from_json(None))
    _raises(mf.ProbeError, "layers=None", lambda: mf.resolve_layers(model, None))


def test_numbers_that_are_not_numbers_are_named(small):
    ls, _, games, _ = small
    _raises(LanguageError, "weights=", lambda: mf.Corpus(games, ls, batch_size=2,
                                                         weights={"L0": "abc"}))
    _raises(mf.IllegalMoveError, "no move to take back", lambda: mf.Board().pop())
    _raises(LanguageError, "max_tokens=1000000000",
            lambda: mf.Language.split("S", max_tokens=10**9, seed=0))
    mapping = {s: ((i,) if i else (10**9,)) for i, s in enumerate(mf.PLAYABLE_SQUARES)}
    _raises(LanguageError, "unused", lambda: mf.Language.from_mapping("X", mapping))
    _raises(DatasetError, "more than the", lambda: mf.split_games(10**12))


@pytest.mark.parametrize("field, value", [
    ("languages", 5), ("n_anchors", "x"), ("seed", -1), ("seed", 2**70), ("language_seed", -1),
    ("attention_backend", "bogus"), ("device", 5), ("compile", "yes"), ("bf16", 5),
    ("tf32", None), ("wandb_project", 5)])
def test_every_train_config_field_is_checked(field, value):
    _raises(ConfigError, f"TrainConfig.{field}=", lambda: mf.TrainConfig(**{field: value}))


def test_config_files_and_overrides_that_cannot_be_read_are_named(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _raises(ConfigError, "not valid JSON/YAML", lambda: mf.load_train_config(tmp_path / "deep.json"))
    _raises(ConfigError, "cannot read config file",
            lambda: mf.load_train_config(tmp_path / "missing.yaml"))
    _raises(ConfigError, "expected a list of 'key=value'",
            lambda: mf.load_train_config(None, "lr=1"))
    _raises(ConfigError, "expected a 'key=value' string", lambda: mf.load_train_config(None, [5]))


def test_a_dataset_larger_than_the_disk_is_refused_before_writing(tmp_path):
    _raises(DatasetError, "GiB free",
            lambda: mf.generate_dataset(tmp_path / "d", n_games=10**15, seed=0, progress=False))
    assert not (tmp_path / "d").exists()


def test_concept_metrics_name_a_bad_seed(small):
    ls, model, games, _ = small
    collection = mf.collect_parallel(model, ls, games, layers=[1], progress=False)
    _raises(ConceptError, "seed=-1", lambda: mf.concept_metrics(collection, seed=-1))


@pytest.mark.parametrize("call, error, match", [
    (lambda: mf.act_name(None), MothelloError, "expected a hook name"),
    (lambda: mf.act_name("resid_post", -1), MothelloError, "layer=-1"),
    (lambda: mf.TrainConfig(n_anchors=61), ConfigError, "n_anchors=61"),
    (lambda: mf.TrainConfig(device="bogus"), ConfigError, "device='bogus'"),
    (lambda: mf.random_init_model(GPTConfig(vocab_size=8, context_length=8, n_layers=1,
                                            n_heads=2, d_model=8), -1), ConfigError, "seed=-1"),
    (lambda: mf.random_canonical_cosines(3, 3, 3, seed=-1), ConceptError, "seed=-1"),
    (lambda: mf.colap([0, 0, 1], [0, 1, 0], min_cluster_size=-5), ConceptError,
     "min_cluster_size=-5"),
    (lambda: mf.t_interval("abc"), ConfigError, "expected an array of numbers"),
    (lambda: mf.KMeans(2).fit([["a", "b"]] * 3), ConceptError, "expected an array of numbers"),
    (lambda: mf.LinearProbe().fit(None, np.zeros((3, 64), int)), ProbeError,
     "expected an array of numbers"),
    (lambda: GPT.from_transformer_lens(None), CheckpointError, "expected a TransformerLens"),
    (lambda: GPT.from_transformer_lens({"embed.W_E": torch.tensor(1.0)}), CheckpointError,
     "expected 2 dimensions")])
def test_more_bad_values_are_named(call, error, match):
    _raises(error, match, call)


def test_cap_per_type_refuses_a_cap_below_one():
    from mothello_fast.concepts import cap_per_type

    for cap in (-1, 0, 1.5):
        _raises(ConceptError, "max_per_type=", lambda: cap_per_type([0, 1], cap))


def test_a_study_setting_anchors_more_squares_than_there_are_is_refused(tmp_path, capsys):
    from mothello_fast.cli import main

    assert main(["study", "--out", str(tmp_path / "s"), "--settings", "anchors:999",
                 "--list-cells"]) == 2
    assert "anchors:999" in capsys.readouterr().err


def test_collections_statistics_and_plots_name_what_does_not_fit(small, tmp_path):
    ls, model, games, tokens = small
    collection = mf.collect_parallel(model, ls, games, layers=[1], progress=False)
    cases = [
        (ProbeError, r"layer \[0\]", lambda: collection.select([[0]])),
        (ProbeError, "layers=1.5", lambda: collection.select(1.5)),
        (ProbeError, "languages=5", lambda: collection.select(None, 5)),
        (ProbeError, "expected a non-empty list of ParallelActivations",
         lambda: mf.ParallelActivations.concatenate([5])),
        (ProbeError, "expected an array of numbers",
         lambda: mf.ParallelActivations.from_sequences({1: {"L0": "abc"}}, ls, games)),
        (ProbeError, "hidden=NoneType", lambda: mf.alignment_matrix(None, collection.board)),
        (ProbeError, "test_hidden=int",
         lambda: mf.alignment_by_layer(collection.hidden, collection.board, test_hidden=5,
                                       test_labels=collection.board)),
        (ConceptError, "expected an array of numbers",
         lambda: mf.unification_score(None, [0, 1], [0, 1])),
        (ConceptError, "seed=-1", lambda: mf.similarity_matrix(
            np.ones((4, 2)), [0, 1, 0, 1], [0, 0, 1, 1], seed=-1)),
        (ConceptError, "expected the SimilarityMatrix",
         lambda: mf.plot_similarity_matrix(None, tmp_path / "x.png")),
        (ConceptError, "expected a dict name -> ConceptReport", lambda: mf.compare_reports(None)),
        (ConceptError, "expected an integer type id",
         lambda: mf.calign([0, 0], [0, 1], [0, 0], [0, 1], {0: [1.5]})),
        (ConceptError, "cluster ids", lambda: mf.colap([10**12, 0], [0, 1])),
        (ConceptError, "n_clusters='x'", lambda: mf.colap([0, 1], [0, 1], n_clusters="x")),
        (ConfigError, "seed=-1", lambda: mf.bootstrap_ratio([1, 2, 3], [3, 3, 3], seed=-1)),
        (ConfigError, "n_resamples=", lambda: mf.bootstrap_ratio([1, 2], [3, 3],
                                                                 n_resamples=10**12)),
        (ConfigError, "expected {'mean'", lambda: mf.Interval.from_dict(None)),
        (MothelloError, "tokens=NoneType", lambda: model.prefill(None)),
        (MothelloError, "returned str", lambda: model.run_with_hooks(
            tokens, [("hook_embed", lambda a, h: "x")])),
        (MothelloError, "expected a GPTConfig", lambda: mf.model.flops_per_token(None))]
    for error, match, call in cases:
        _raises(error, match, call)


def test_the_last_kinds_of_bad_input_are_named(small):
    from mothello_fast.train import train

    ls, model, games, _ = small
    cases = [
        (ConfigError, "expected a TrainConfig", lambda: train(
            None, train_games=games, val_games=games, out_dir="unused")),
        (LanguageError, "expected a LanguageSet",
         lambda: mf.language_confusion(model, None, games, language="L0", into="L1")),
        (ConfigError, "printable name", lambda: mf.derive_seed(0, "\ud800")),
        (MothelloError, "device='bogus'",
         lambda: mf.random_init_model(model.config, 0, device="bogus")),
        (ProbeError, "more than the", lambda: mf.MLPProbe(hidden=10**12, epochs=1).fit(
            np.ones((4, 8)), np.zeros((4, 64), int))),
        (ConceptError, "lacks", lambda: mf.compare_reports({"a": {}, "b": {}}))]
    for error, match, call in cases:
        _raises(error, match, call)
    grad = {1: {"L0": torch.zeros(4, 10, 8, requires_grad=True)}}   # a graph's tensors: values
    assert len(mf.ParallelActivations.from_sequences(grad, LanguageSet.from_spec("atomic"),
                                                     games, max_moves=5)) > 0
