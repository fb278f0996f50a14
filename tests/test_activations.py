"""Activations: hidden states at the last sub-token of every move, row-aligned with the
position after that move, in eval mode, in memory or streamed to disk."""
import numpy as np
import pytest
import torch

from mothello_fast.activation_store import load_activations
from mothello_fast.activations import collect_activations, hook_name, resolve_layers
from mothello_fast.errors import DatasetError, LanguageError, ProbeError
from mothello_fast.languages import LanguageSet
from mothello_fast.model import GPT, GPTConfig
from mothello_fast.othello import Board, generate_games


@pytest.fixture(scope="module")
def language_set():
    return LanguageSet.from_spec("atomic,split:3", seed=0)


@pytest.fixture(scope="module")
def model(language_set):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=language_set.vocab_size,
                       context_length=language_set.context_length, n_layers=2, n_heads=2,
                       d_model=32, d_mlp=64, dropout=0.5)
    return GPT(config).eval()


@pytest.fixture(scope="module")
def games():
    return generate_games(6, seed=3)


def move_end_positions(language_set, language: str, game: np.ndarray,
                       max_moves: int | None = 59) -> list[int]:
    """Token position of the last sub-token of each of the first `max_moves` moves (the
    protocol's 59 by default), by walking the game's codes."""
    codes = language_set.token_ids(language)
    positions, t = [], -1
    for square in game[game >= 0][:max_moves]:
        t += int((codes[square] >= 0).sum())
        positions.append(t)
    return [p for p in positions if p < language_set.context_length]


@pytest.mark.parametrize("language", ["L0", "L1"])
def test_rows_are_the_residual_stream_at_each_move_end(model, language_set, games, language):
    acts = collect_activations(model, language_set, games, language=language, layers=[2],
                               progress=False)
    tokens = torch.as_tensor(language_set.encode(games, language).tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    expected = np.concatenate([cache["blocks.1.hook_resid_post"][g, move_end_positions(
        language_set, language, games[g])].numpy() for g in range(len(games))])
    np.testing.assert_allclose(acts.hidden["blocks.1.hook_resid_post"], expected, atol=1e-5)


def test_labels_are_the_position_after_each_move(model, language_set, games):
    acts = collect_activations(model, language_set, games, language="L1", layers=[1],
                               progress=False)
    for row in range(0, len(acts), 7):
        g, i = acts.game[row], acts.move[row]
        board = Board.from_moves(games[g][:i + 1])
        np.testing.assert_array_equal(acts.board[row], board.board())
        if not board.is_game_over():
            mine = (board.board() == board.turn) & (board.board() > 0)
            np.testing.assert_array_equal(acts.relative[row] == 1, mine)
            np.testing.assert_array_equal(np.flatnonzero(acts.legal_next[row]),
                                          board.legal_moves)


def test_each_of_the_first_59_moves_of_every_game_has_one_row(model, language_set, games):
    # the protocol scores the first 59 moves: the 60th move's position has no next move
    assert (games >= 0).sum(1).max() == 60
    acts = collect_activations(model, language_set, games, language="L0", layers=[0],
                               batch_size=4, progress=False)
    expected = [(g, i) for g in range(len(games))
                for i in range(min(59, int((games[g] >= 0).sum())))]
    assert list(zip(acts.game.tolist(), acts.move.tolist())) == expected


def test_max_moves_none_keeps_every_move(model, language_set, games):
    acts = collect_activations(model, language_set, games, language="L0", layers=[0],
                               max_moves=None, progress=False)
    expected = [(g, i) for g in range(len(games)) for i in range(int((games[g] >= 0).sum()))]
    assert list(zip(acts.game.tolist(), acts.move.tolist())) == expected


def test_a_bad_max_moves_is_refused(model, language_set, games):
    with pytest.raises(ProbeError, match="max_moves=0"):
        collect_activations(model, language_set, games, language="L0", max_moves=0,
                            progress=False)


def test_layer_zero_is_token_plus_position_embedding(model, language_set, games):
    acts = collect_activations(model, language_set, games[:1], language="L0", layers=[0],
                               progress=False)
    tokens = language_set.encode(games[:1], "L0").tokens[0]
    positions = move_end_positions(language_set, "L0", games[0])
    expected = (model.embed.weight[tokens[positions]] + model.pos_embed.weight[positions])
    np.testing.assert_allclose(acts.hidden["blocks.0.hook_resid_pre"], expected.detach().numpy(),
                               atol=1e-6)


def test_collection_turns_dropout_off_and_restores_training_mode(model, language_set, games):
    expected = collect_activations(model, language_set, games, language="L0", layers=[2],
                                   progress=False).hidden["blocks.1.hook_resid_post"]
    model.train()
    try:
        got = collect_activations(model, language_set, games, language="L0", layers=[2],
                                  progress=False).hidden["blocks.1.hook_resid_post"]
        assert model.training
    finally:
        model.eval()
    np.testing.assert_array_equal(got, expected)


def test_integer_layers_count_blocks_from_the_embeddings():
    assert [hook_name(layer, 8) for layer in (0, 1, 8)] == [
        "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.7.hook_resid_post"]
    with pytest.raises(ProbeError, match="0..8"):
        hook_name(9, 8)


def test_unknown_language_is_refused(model, language_set, games):
    with pytest.raises(LanguageError, match="L7"):
        collect_activations(model, language_set, games, language="L7", progress=False)


def test_streamed_collection_equals_the_in_memory_one(tmp_path, model, language_set, games):
    memory = collect_activations(model, language_set, games, language="L1", layers=[1, 2],
                                 batch_size=2, progress=False)
    store = collect_activations(model, language_set, games, language="L1", layers=[1, 2],
                                batch_size=2, shard_games=4, out_dir=tmp_path / "acts",
                                progress=False)
    assert len(store.index["shards"]) == 2 and len(store) == len(memory)
    loaded = load_activations(tmp_path / "acts").load()
    for name in memory.hidden:
        np.testing.assert_array_equal(loaded.hidden[name], memory.hidden[name])
    for field in ("board", "relative", "legal_next", "player", "game", "move"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(memory, field))


def test_rerunning_a_streamed_collection_skips_finished_shards(tmp_path, model, language_set,
                                                                games):
    out = tmp_path / "acts"
    collect_activations(model, language_set, games, language="L0", layers=[1], shard_games=3,
                        out_dir=out, progress=False)
    shard = out / "shard-00000.safetensors"
    before = shard.stat().st_mtime_ns
    (out / "index.json").unlink()           # an interrupted run: shards written, no index
    store = collect_activations(model, language_set, games, language="L0", layers=[1],
                                shard_games=3, out_dir=out, progress=False)
    assert shard.stat().st_mtime_ns == before and len(store.index["shards"]) == 2


def test_a_corrupted_shard_is_named(tmp_path, model, language_set, games):
    out = tmp_path / "acts"
    collect_activations(model, language_set, games, language="L0", layers=[1], shard_games=3,
                        out_dir=out, progress=False)
    shard = out / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(DatasetError, match="shard-00001"):
        load_activations(out)


# seed 3 gives L1 other split tokens, in a vocabulary and context of the same sizes
OTHER_SPLIT = LanguageSet.from_spec("atomic,split:3", seed=3)


@pytest.mark.parametrize("other_set, other_language", [(None, "L0"), (OTHER_SPLIT, "L1")],
                         ids=["another language", "the same names written otherwise"])
def test_another_collection_in_the_same_directory_is_refused(tmp_path, model, language_set,
                                                             games, other_set, other_language):
    other_set = other_set or language_set
    assert (other_set.vocab_size, other_set.context_length) == (language_set.vocab_size,
                                                                language_set.context_length)
    out = tmp_path / "acts"
    collect_activations(model, language_set, games, language="L1", layers=[1], out_dir=out,
                        progress=False)
    with pytest.raises(DatasetError, match="another activation collection"):
        collect_activations(model, other_set, games, language=other_language, layers=[1],
                            out_dir=out, progress=False)
    assert not np.array_equal(OTHER_SPLIT.token_ids("L1"), language_set.token_ids("L1"))


def test_layers_resolve_to_one_pair_per_distinct_hook(model):
    assert resolve_layers(model, [1, 1, 2, "blocks.0.hook_resid_post"]) == [
        (1, "blocks.0.hook_resid_post"), (2, "blocks.1.hook_resid_post")]


def test_a_single_integer_layer_is_a_list_of_one(model):
    assert resolve_layers(model, 2) == [(2, "blocks.1.hook_resid_post")]


def test_a_glob_pattern_expands_to_the_matching_hooks(model, language_set, games):
    acts = collect_activations(model, language_set, games[:1], language="L0",
                               layers=["blocks.*.hook_resid_post"], progress=False)
    assert acts.layers == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def test_a_pattern_matching_no_hook_is_refused(model):
    with pytest.raises(ProbeError, match=r"blocks\.\*\.hook_nothing"):
        resolve_layers(model, ["blocks.*.hook_nothing"])


def test_an_unknown_hook_name_is_refused(model):
    with pytest.raises(ProbeError, match="blocks.7.hook_resid_post"):
        resolve_layers(model, ["blocks.7.hook_resid_post"])


def test_empty_games_are_refused_before_writing_to_disk(tmp_path, model, language_set, games):
    with pytest.raises(ProbeError, match="games is empty"):
        collect_activations(model, language_set, games[:0], language="L0", layers=[1],
                            out_dir=tmp_path / "acts", progress=False)
    assert not (tmp_path / "acts").exists()


def test_the_position_embedding_is_read_at_each_move_end_position(model, language_set, games):
    # hook_pos_embed is [B, T, d_model] (as in TransformerLens): row i is its move's position
    acts = collect_activations(model, language_set, games[:2], language="L1",
                               layers=["hook_pos_embed"], progress=False)
    positions = [p for g in range(2) for p in move_end_positions(language_set, "L1", games[g])]
    np.testing.assert_allclose(acts.hidden["hook_pos_embed"],
                               model.pos_embed.weight[positions].detach().numpy(), atol=1e-6)


def test_a_stored_collection_keeps_the_order_of_its_layers(tmp_path, model, language_set, games):
    layers = [2, 0, 1]   # not the alphabetical order of their hook names
    memory = collect_activations(model, language_set, games, language="L0", layers=layers,
                                 progress=False)
    store = collect_activations(model, language_set, games, language="L0", layers=layers,
                                shard_games=4, out_dir=tmp_path / "acts", progress=False)
    assert store.layers == memory.layers
    assert store.load().layers == memory.layers
    assert [part.layers for part in store] == [memory.layers] * 2


def test_a_stored_collection_loads_one_layer_by_its_hook_name(tmp_path, model, language_set,
                                                              games):
    store = collect_activations(model, language_set, games, language="L0", layers=[1, 2],
                                out_dir=tmp_path / "acts", progress=False)
    assert store.load("blocks.0.hook_resid_post").layers == ["blocks.0.hook_resid_post"]


@pytest.mark.parametrize("layers", [[0], [1], ["blocks.0.hook_attn_out"], [2, 1],
                                    ["hook_embed", "blocks.1.hook_mlp_out"], ["*"]])
def test_rows_equal_those_of_a_whole_forward_pass_exactly(model, language_set, games, layers):
    """The forward pass stops after the deepest hook read; what it keeps is bit for bit
    what the whole forward pass (run_with_cache) gives at the move ends."""
    acts = collect_activations(model, language_set, games, language="L1", layers=layers,
                               batch_size=4, progress=False)
    tokens = torch.as_tensor(language_set.encode(games, "L1").tokens)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=acts.layers)
    for hook in acts.layers:
        rows = []
        for g in range(len(games)):
            at = move_end_positions(language_set, "L1", games[g])
            # attention scores and patterns [B, heads, T, T]: a row per query position
            act = cache[hook][g][:, at].transpose(0, 1) if hook.endswith(
                ("hook_attn_scores", "hook_pattern")) else cache[hook][g, at]
            rows.append(act.reshape(len(at), -1).numpy())
        np.testing.assert_array_equal(acts.hidden[hook], np.concatenate(rows))


@pytest.mark.parametrize("layers, mlps_run", [([0], 0), ([1], 1), (["blocks.1.hook_attn_out"], 1),
                                              ([1, 0], 1), ([2], 2)])
def test_nothing_after_the_deepest_layer_read_is_run(model, language_set, games, layers,
                                                     mlps_run):
    calls = []
    handles = [m.register_forward_pre_hook(lambda *_, name=name: calls.append(name))
               for name, m in [("mlp0", model.blocks[0].mlp), ("mlp1", model.blocks[1].mlp),
                               ("unembed", model.unembed)]]
    try:
        collect_activations(model, language_set, games, language="L0", layers=layers,
                            progress=False)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(set(calls)) == [f"mlp{i}" for i in range(mlps_run)]
    assert not any(m._forward_hooks for m in model.modules())   # collection's hooks removed


@pytest.mark.parametrize("entry, message", [({"file": "../other/shard-00000.safetensors"},
                                             "not a plain file name"),
                                            ({"file": "/etc/passwd"}, "not a plain file name"),
                                            ({"drop": "sha256"}, "has no sha256")])
def test_an_index_pointing_outside_its_store_or_without_a_digest_is_refused(
        tmp_path, model, language_set, games, entry, message):
    import json

    from mothello_fast.activation_store import load_activations
    from mothello_fast.errors import DatasetError

    collect_activations(model, language_set, games, language="L0", layers=[1],
                        out_dir=tmp_path / "acts", progress=False)
    index = json.loads((tmp_path / "acts" / "index.json").read_text())
    if "drop" in entry:
        del index["shards"][0][entry["drop"]]
    else:
        index["shards"][0].update(entry)
    (tmp_path / "acts" / "index.json").write_text(json.dumps(index))
    for verify in (True, False):
        with pytest.raises(DatasetError, match=message):
            load_activations(tmp_path / "acts", verify=verify)


def test_any_model_s_hidden_states_make_the_same_collection(model, language_set, games):
    """A model outside the toolkit (here: the same model run as TransformerLens would, its
    hook tensors [B, T, d] read per language) gives the collection collect_parallel gives."""
    from mothello_fast.activations import ParallelActivations, collect_parallel

    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    hidden = {}
    for language in language_set.names:
        tokens = torch.as_tensor(language_set.encode(games, language).tokens)
        _, cache = model.run_with_cache(tokens, names_filter=hooks)
        for layer, hook in zip((1, 2), hooks):
            hidden.setdefault(layer, {})[language] = cache[hook].numpy()
    outside = ParallelActivations.from_sequences(hidden, language_set, games)
    ours = collect_parallel(model, language_set, games, layers=[1, 2], progress=False)
    for layer in (1, 2):
        for language in language_set.names:
            np.testing.assert_allclose(outside.hidden[layer][language],
                                       ours.hidden[layer][language], atol=1e-5)
    np.testing.assert_array_equal(outside.board, ours.board)
    np.testing.assert_array_equal(outside.game, ours.game)


def test_hidden_states_of_the_wrong_shape_are_named(language_set, games):
    from mothello_fast.activations import ParallelActivations

    bad = {1: {name: np.zeros((len(games) - 1, 5, 4)) for name in language_set.names}}
    with pytest.raises(ProbeError, match=r"hidden\[1\]\['L0'\] has shape"):
        ParallelActivations.from_sequences(bad, language_set, games)


def test_a_transformer_lens_othello_gpt_is_analysed_end_to_end():
    """The worked example (examples/any_model.py, shown in the README): an Othello-GPT-shaped
    TransformerLens model (random weights; run here by the TransformerLens-style reference
    forward pass of test_model, by TransformerLens itself in the example): games -> its
    tokens -> activations -> probes at every layer."""
    import importlib.util
    from pathlib import Path

    from mothello_fast.probes import LinearProbe
    from test_model import tl_forward, tl_state_dict

    path = Path(__file__).parent.parent / "examples" / "any_model.py"
    spec = importlib.util.spec_from_file_location("any_model", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    state_dict = tl_state_dict(layers=2, d=32)
    collection, alignment = example.analyse(lambda tokens: tl_forward(state_dict, tokens),
                                            n_layers=2, n_games=60, probe=LinearProbe(epochs=2))
    games = generate_games(60, seed=0)
    assert len(collection) == int(np.minimum((games >= 0).sum(1), 59).sum())   # not the 60th
    assert alignment.layers == (0, 1, 2) and collection.hooks == {0: 0, 1: 1, 2: 2}
    _, cache = tl_forward(state_dict, torch.as_tensor(
        LanguageSet.from_spec("atomic").encode(games[:1], "L0").tokens[:, :59]))
    np.testing.assert_allclose(collection.hidden[2]["L0"][:59],
                               cache["blocks.1.hook_resid_post"][0].numpy(), atol=1e-6)
    assert np.all((0.3 < alignment.in_distribution) & (alignment.in_distribution <= 1.0))
