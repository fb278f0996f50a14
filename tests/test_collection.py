"""One currency: a collection of parallel activations, in memory or on disk, taken by every
analysis (probes, the alignment matrix, the concept metrics), with estimators as objects."""
import json

import numpy as np
import pytest
import torch

from mothello_fast.activation_store import ParallelStore, load_activations
from mothello_fast.activations import ParallelActivations, collect_parallel, resolve_layers
from mothello_fast.errors import ConceptError, DatasetError, ProbeError
from mothello_fast.kmeans import KMeans
from mothello_fast.languages import LanguageSet
from mothello_fast.model import act_name
from mothello_fast.othello import generate_games
from mothello_fast.probes import LinearProbe
from test_activations import language_set, model  # noqa: F401  (the same small model, in eval mode)

FAST = {"lr": 1e-2, "batch_size": 256, "epochs": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def games():
    return generate_games(10, seed=3)


@pytest.fixture(scope="module")
def collection(model, language_set, games):
    return collect_parallel(model, language_set, games, layers=[0, 1, 2], progress=False)


def assert_same_collection(a: ParallelActivations, b: ParallelActivations) -> None:
    assert a.languages == b.languages and a.hooks == b.hooks
    for layer in a.hidden:
        for language in a.languages:
            np.testing.assert_array_equal(a.hidden[layer][language], b.hidden[layer][language])
    for field in ("board", "relative", "game", "move", "square"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# --- the collection ------------------------------------------------------------------------

def test_each_position_carries_the_square_of_its_move(collection, games):
    assert collection.square.dtype == np.int64
    np.testing.assert_array_equal(collection.square, games[collection.game, collection.move])
    assert collection.language_set is not None


def test_a_saved_collection_reads_back_the_same(collection, tmp_path):
    store = collection.save(tmp_path / "acts", shard_positions=100)
    assert len(store.index["shards"]) == -(-len(collection) // 100)
    loaded = load_activations(tmp_path / "acts")
    assert isinstance(loaded, ParallelStore) and loaded.layers == [0, 1, 2]
    back = loaded.load()
    assert_same_collection(back, collection)
    assert back.language_set.to_dict() == collection.language_set.to_dict()
    # shard by shard, streamed
    assert_same_collection(ParallelActivations.concatenate(list(loaded)), collection)
    # some layers, by label or hook name
    assert_same_collection(loaded.load([2, "blocks.0.hook_resid_post"]),
                           collection.select([2, 1]))
    assert collection.save(tmp_path / "acts", shard_positions=100).index == store.index
    with pytest.raises(DatasetError, match="its shard_positions differ"):
        collection.save(tmp_path / "acts", shard_positions=50)


def test_a_directory_holding_another_collection_is_refused(collection, tmp_path):
    collection.save(tmp_path / "acts")
    with pytest.raises(DatasetError, match="already holds another activation collection"):
        collection.select([1]).save(tmp_path / "acts")


def test_a_corrupted_parallel_shard_is_named(collection, tmp_path):
    store = collection.save(tmp_path / "acts", shard_positions=200)
    shard = tmp_path / "acts" / store.index["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{shard.name}.*corrupted"):
        load_activations(tmp_path / "acts")


def test_a_parallel_index_pointing_outside_its_directory_is_refused(collection, tmp_path):
    collection.save(tmp_path / "acts")
    index = json.loads((tmp_path / "acts" / "index.json").read_text())
    index["shards"][0]["file"] = "../elsewhere.safetensors"
    (tmp_path / "acts" / "index.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match="not a plain file name"):
        load_activations(tmp_path / "acts", verify=False)


def test_collecting_to_disk_streams_the_same_collection_and_resumes(model, language_set, games,
                                                                    collection, tmp_path,
                                                                    monkeypatch):
    import mothello_fast.activations as activations

    store = collect_parallel(model, language_set, games, layers=[0, 1, 2], progress=False,
                             out_dir=tmp_path / "acts", shard_games=4)
    assert [s["range"] for s in store.index["shards"]] == [[0, 4], [4, 8], [8, 10]]
    assert_same_collection(store.load(), collection)
    # an interrupted collection (no index yet, one shard missing) redoes only that shard
    (tmp_path / "acts" / "index.json").unlink()
    for suffix in ("safetensors", "json"):
        (tmp_path / "acts" / f"shard-00001.{suffix}").unlink()
    calls = []
    original = activations.collect_activations

    def counted(*args, **kwargs):
        calls.append(len(args[2]))
        return original(*args, **kwargs)

    monkeypatch.setattr(activations, "collect_activations", counted)
    again = collect_parallel(model, language_set, games, layers=[0, 1, 2], progress=False,
                             out_dir=tmp_path / "acts", shard_games=4)
    assert calls == [4, 4]   # one shard's games, once per language
    assert_same_collection(again.load(), collection)
    with pytest.raises(DatasetError, match="another activation collection"):
        collect_parallel(model, language_set, games[:8], layers=[0, 1, 2], progress=False,
                         out_dir=tmp_path / "acts", shard_games=4)


def test_any_model_s_collection_saves_without_a_language_set(tmp_path):
    ls = LanguageSet.from_spec("atomic")
    games = generate_games(5, seed=1)
    hidden = {"resid": {"L0": np.random.default_rng(0).standard_normal(
        (5, 59, 8)).astype(np.float32)}}
    collection = ParallelActivations.from_sequences(hidden, ls, games)
    collection.language_set = None
    back = collection.save(tmp_path / "acts").load()
    assert back.language_set is None and back.layers == ["resid"]
    assert_same_collection(back, collection)


def test_select_and_concatenate_name_what_does_not_fit(collection):
    with pytest.raises(ProbeError, match=r"layer 7 not collected"):
        collection.select([7])
    with pytest.raises(ProbeError, match="layers is empty"):
        collection.select([])
    with pytest.raises(ProbeError, match=r"languages=\['X'\]"):
        collection.select(languages=["X"])
    with pytest.raises(ProbeError, match="expected distinct languages"):
        collection.select(languages=["L0", "L0"])
    with pytest.raises(ProbeError, match="expected"):
        ParallelActivations.concatenate([collection, collection.select([1])])


# --- layers: one convention, TransformerLens's keys accepted -------------------------------

@pytest.mark.parametrize("key, name", [
    (("resid_post", 1), "blocks.1.hook_resid_post"), (("resid_pre", 0), "blocks.0.hook_resid_pre"),
    (("pattern", 0), "blocks.0.attn.hook_pattern"), (("attn", 1), "blocks.1.attn.hook_pattern"),
    (("attn_logits", 0), "blocks.0.attn.hook_attn_scores"), (("q", 1), "blocks.1.attn.hook_q"),
    (("post", 0), "blocks.0.mlp.hook_post"), (("mlp_out", 1), "blocks.1.hook_mlp_out"),
    (("scale", 1, "ln2"), "blocks.1.ln2.hook_scale")])
def test_transformer_lens_keys_name_the_same_hooks_as_in_transformer_lens(model, key, name):
    # the names TransformerLens's utils.get_act_name gives for these keys
    assert act_name(*key) == name
    assert resolve_layers(model, [key]) == [(name, name)]


def test_a_transformer_lens_key_is_the_layer_after_its_block(model):
    assert resolve_layers(model, [("resid_post", 1)])[0][1] == resolve_layers(model, [2])[0][1]


@pytest.mark.parametrize("key, match", [(("resid_post",), "expected a TransformerLens key"),
                                        (("resid_post", 5), "not a hook point"),
                                        (("scale", 0), "layer_type 'ln1' or 'ln2'")])
def test_a_bad_transformer_lens_key_is_named(model, key, match):
    with pytest.raises(ProbeError, match=match):
        resolve_layers(model, [key])


def test_the_cache_takes_transformer_lens_keys_inside_blocks(model, language_set, games):
    tokens = torch.as_tensor(language_set.encode(games[:2], "L0").tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    assert cache["pattern", 1] is cache["blocks.1.attn.hook_pattern"]
    assert cache.stack("pattern").shape == (2, 2, 2, tokens.shape[1], tokens.shape[1])
    assert torch.equal(cache.stack("scale", "ln1")[0], cache["blocks.0.ln1.hook_scale"])


# --- analyses take the collection; estimators are objects, cloned --------------------------

def test_align_on_a_collection_equals_the_array_form_and_leaves_the_probe_unfitted(
        collection, model, language_set, games):
    from mothello_fast.alignment import align, alignment_by_layer, model_alignment

    probe = LinearProbe(**FAST, seed=5)
    result = align(collection, layers=[2], probe=probe, seed=1)
    arrays = alignment_by_layer({2: collection.hidden[2]}, collection.board, probe=probe, seed=1)
    np.testing.assert_array_equal(result[2].accuracy, arrays[2].accuracy)
    assert not hasattr(probe, "params_")   # cloned for every fit
    through_model = model_alignment(model, language_set, games, layers=[2], probe=probe,
                                    seed=1, progress=False)
    np.testing.assert_array_equal(through_model[2].accuracy, result[2].accuracy)


def test_a_scikit_learn_estimator_is_a_probe(collection):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multioutput import MultiOutputClassifier

    from mothello_fast.alignment import align
    from mothello_fast.probes import split_positions

    estimator = MultiOutputClassifier(LogisticRegression(max_iter=200))
    result = align(collection, layers=[2], probe=estimator, seed=0)
    train, test = split_positions(len(collection), 0.2, 0)
    X, y = collection.hidden[2], collection.board
    fitted = MultiOutputClassifier(LogisticRegression(max_iter=200)).fit(X["L0"][train], y[train])
    expected = (fitted.predict(X["L1"][test]) == y[test]).mean()
    assert result[2].accuracy[0, 1] == pytest.approx(expected)


def test_probe_activations_reads_a_collection_as_probe_model_does(collection, model,
                                                                   language_set, games,
                                                                   tmp_path):
    from mothello_fast.probes import load_probe, probe_activations, probe_model

    probe = LinearProbe(**FAST)
    stored = collection.save(tmp_path / "acts").load()
    result = probe_activations(stored, language="L1", layers=[1, 2], probe=probe,
                               out_dir=tmp_path / "probes")
    direct = probe_model(model, language_set, games, language="L1", layers=[1, 2],
                         probe=probe, progress=False)
    assert result.to_dict() == direct.to_dict()
    assert json.loads((tmp_path / "probes" / "probes.json").read_text()) == result.to_dict()
    saved = load_probe(tmp_path / "probes" / "probe-blocks.1.hook_resid_post.safetensors")
    np.testing.assert_array_equal(saved.predict(stored.hidden[2]["L1"]),
                                  result.probes[1].predict(stored.hidden[2]["L1"]))
    with pytest.raises(ProbeError, match="expected one of them"):
        probe_activations(stored, probe=probe)   # two languages: which one?


def test_concept_metrics_of_a_collection_are_the_model_report_s(model, language_set, games,
                                                                 collection):
    from mothello_fast.concepts import concept_metrics, concept_report

    kmeans = KMeans(6, n_init=2, max_iter=50, seed=0, device="cpu")
    report = concept_metrics(collection, layers=[1, 2], kmeans=kmeans, seed=0)
    from_model = concept_report(model, language_set, games, layers=[1, 2], kmeans=kmeans,
                                seed=0, progress=False)
    assert [row.to_dict() for row in report.per_layer] == \
        [row.to_dict() for row in from_model.per_layer]
    assert report.embedding_geometry is None and from_model.embedding_geometry is not None
    assert report[2].hook == "blocks.1.hook_resid_post"
    assert not hasattr(kmeans, "labels_")   # cloned for every clustering
    with pytest.raises(ConceptError, match="at least two languages"):
        concept_metrics(collection.select(languages=["L0"]), kmeans=kmeans)


def test_kmeans_clones_with_its_parameters():
    from sklearn.base import clone

    kmeans = KMeans(7, n_init=3, max_iter=20, seed=4, device="cpu")
    copy = clone(kmeans)
    assert copy is not kmeans and copy.get_params() == kmeans.get_params()
    with pytest.raises(ConceptError, match="'k' is not a parameter of KMeans"):
        kmeans.set_params(k=3)


# --- the commands read a collection ----------------------------------------------------------

@pytest.fixture(scope="module")
def saved(model, language_set, tmp_path_factory):
    from mothello_fast.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "ckpt"
    save_checkpoint(path, model=model, language_set=language_set)
    return path


def test_collect_then_align_equals_align_on_the_checkpoint(saved, tmp_path, capsys):
    from mothello_fast.cli import main

    common = ["--games", "12", "--seed", "3", "--quiet"]
    assert main(["collect", str(saved), "--layers", "1", "2", "--out", str(tmp_path / "acts"),
                 *common]) == 0
    probe = ["--kind", "linear", "--epochs", "2", "--device", "cpu"]
    assert main(["align", "--activations", str(tmp_path / "acts"), *probe,
                 "--out", str(tmp_path / "a.json"), "--seed", "3"]) == 0
    assert main(["align", str(saved), "--layers", "1", "2", "--test-games", "0", *probe,
                 "--out", str(tmp_path / "b.json"), *common]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["matrices"] == b["matrices"] and a["layers"] == b["layers"] == [1, 2]


def test_probe_and_concepts_read_a_collection(saved, tmp_path, capsys):
    from mothello_fast.cli import main

    assert main(["collect", str(saved), "--layers", "2", "--languages", "L0", "--games", "8",
                 "--out", str(tmp_path / "acts"), "--quiet"]) == 0
    assert main(["probe", "--activations", str(tmp_path / "acts"), "--kind", "linear",
                 "--epochs", "1", "--device", "cpu", "--quiet"]) == 0   # its one language
    assert json.loads(capsys.readouterr().out.splitlines()[-1]).keys() == {"2"}
    assert main(["collect", str(saved), "--layers", "1", "--games", "8",
                 "--out", str(tmp_path / "both"), "--quiet"]) == 0
    assert main(["concepts", "--activations", str(tmp_path / "both"), "--clusters", "4",
                 "--n-init", "1", "--device", "cpu", "--quiet", "--out",
                 str(tmp_path / "c")]) == 0
    written = json.loads((tmp_path / "c" / "concepts.json").read_text())
    assert written["layers"] == [1] and written["embedding_geometry"] is None


@pytest.mark.parametrize("argv, message", [
    (["probe", "CKPT", "--activations", "ACTS", "--language", "L0"], "expected one of them"),
    (["align", "CKPT", "--test-activations", "ACTS", "--out", "x.json"],
     "--test-activations needs --activations"),
    (["probe", "--activations", "SINGLE", "--language", "L0"], "holds one language"),
    (["probe", "CKPT"], "--language is missing")])
def test_the_commands_name_a_source_that_does_not_fit(saved, model, language_set, games,
                                                      tmp_path, capsys, argv, message):
    from mothello_fast.activations import collect_activations
    from mothello_fast.cli import main

    collect_activations(model, language_set, games, language="L0", layers=[1],
                        progress=False, out_dir=tmp_path / "single")
    paths = {"CKPT": str(saved), "ACTS": str(tmp_path), "SINGLE": str(tmp_path / "single")}
    assert main([paths.get(a, a) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_a_collection_s_layers_are_named_by_the_one_convention(collection, tmp_path):
    """Labels, hook names, integers and TransformerLens keys all name a collected hook, in
    a collection and in its store, whatever the labels it was collected under."""
    by_hooks = collection.select([1, 2])
    by_hooks.hooks = {hook: hook for hook in by_hooks.hooks.values()}   # labelled by hook name
    by_hooks.hidden = dict(zip(by_hooks.hooks, collection.select([1, 2]).hidden.values()))
    store = by_hooks.save(tmp_path / "acts")
    for spelling in (2, ("resid_post", 1), "blocks.1.hook_resid_post", [np.int64(2)],
                     np.array([2]), range(2, 3)):
        assert by_hooks.select(spelling).layers == ["blocks.1.hook_resid_post"], spelling
        assert store.load(spelling).layers == ["blocks.1.hook_resid_post"], spelling
    assert collection.select(("resid_pre", 0)).layers == [0]


def test_a_label_json_cannot_keep_is_refused_before_writing(collection, tmp_path):
    odd = collection.select([1])
    odd.hooks = {("a", 1): odd.hooks[1]}
    odd.hidden = {("a", 1): odd.hidden[1]}
    with pytest.raises(ProbeError, match="expected integers or strings"):
        odd.save(tmp_path / "acts")
    assert not (tmp_path / "acts").exists()


def test_an_interrupted_save_resumed_with_another_shard_size_is_refused(collection, tmp_path):
    collection.save(tmp_path / "acts", shard_positions=300)
    (tmp_path / "acts" / "index.json").unlink()   # as if interrupted after its shards
    with pytest.raises(DatasetError, match="its shard_positions differ"):
        collection.save(tmp_path / "acts", shard_positions=100)


def test_a_shard_record_of_another_range_is_written_again(collection, tmp_path):
    store = collection.save(tmp_path / "acts", shard_positions=200)
    record = tmp_path / "acts" / "shard-00001.json"
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "range": [0, 1]}))   # a stale record
    (tmp_path / "acts" / "index.json").unlink()
    again = collection.save(tmp_path / "acts", shard_positions=200)
    assert again.index["shards"][1]["range"] == store.index["shards"][1]["range"]
    assert_same_collection(again.load(), collection)


def test_collecting_to_disk_checks_its_arguments_before_writing(model, language_set, games,
                                                                 tmp_path):
    with pytest.raises(ProbeError, match="max_moves=0"):
        collect_parallel(model, language_set, games, layers=[1], max_moves=0, progress=False,
                         out_dir=tmp_path / "acts")
    other = LanguageSet.from_spec("atomic")
    with pytest.raises(Exception, match="vocabulary"):
        collect_parallel(model, other, games, layers=[1], progress=False,
                         out_dir=tmp_path / "acts")
    assert not (tmp_path / "acts").exists()
    collect_parallel(model, language_set, games, layers=[1], progress=False,
                     out_dir=tmp_path / "acts")   # the directory is still free


def test_a_missing_or_linked_shard_is_named_even_unverified(collection, tmp_path):
    store = collection.save(tmp_path / "acts", shard_positions=200)
    shard = tmp_path / "acts" / store.index["shards"][0]["file"]
    moved = tmp_path / "elsewhere.safetensors"
    shard.rename(moved)
    with pytest.raises(DatasetError, match="missing or not a plain file"):
        load_activations(tmp_path / "acts", verify=False).load()
    shard.symlink_to(moved)
    with pytest.raises(DatasetError, match="missing or corrupted"):
        load_activations(tmp_path / "acts")
    with pytest.raises(DatasetError, match="missing or not a plain file"):
        load_activations(tmp_path / "acts", verify=False).load()


def test_concept_metrics_refuse_one_language_and_a_clusterer_without_k(collection):
    from sklearn.cluster import DBSCAN

    from mothello_fast.concepts import concept_metrics

    with pytest.raises(ConceptError, match="at least two languages"):
        concept_metrics(collection, languages="L0")
    with pytest.raises(ConceptError, match="has no n_clusters"):
        concept_metrics(collection, kmeans=DBSCAN())
