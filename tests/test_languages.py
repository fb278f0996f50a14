"""Languages, the id space of a language set, encoding/decoding and training targets,
checked against the move-by-move reference in language_oracle.py."""
import json

import numpy as np
import pytest
import torch

import mothello_fast as mf
from mothello_fast.errors import GameArrayError, InvalidSquareError, LanguageError
from mothello_fast.languages import Language, LanguageSet
from language_oracle import (PLAYABLE, assign_ids, context_length, decode_row, encode_game,
                             standard_targets, unified_targets)


def sample_games(n=300, seed=0):
    """Random games, some cut short (prefixes) so that rows end at different lengths."""
    games = mf.generate_games(n, seed=seed)
    lengths = np.random.default_rng(seed).integers(0, 61, size=n)
    games[np.arange(60) >= lengths[:, None]] = -1
    games[: n // 3] = mf.generate_games(n // 3, seed=seed + 1)   # and full games
    return games


def oracle_for(ls):
    out = ls.output_language.square_tokens if ls.output_language else None
    return assign_ids([lang.square_tokens for lang in ls.languages], ls.anchors, out)


MIXED = ["atomic", "split", "compositional", "split:2"]
FIELDS = ("tokens", "move_index", "move_end")


@pytest.fixture(scope="module")
def mixed_set():
    return LanguageSet.from_spec(MIXED, n_anchors=10, seed=3, unified=True)


# ------------------------------------------------------------------ languages
def test_atomic_language_has_one_fresh_token_per_square():
    lang = Language.atomic("A")
    assert lang.square_tokens == tuple((i,) for i in range(60))
    assert lang.n_tokens == 60


def test_split_language_uses_one_to_k_fresh_tokens_per_square():
    lang = Language.split("S", max_tokens=3, seed=5)
    lengths = [len(t) for t in lang.square_tokens]
    assert set(lengths) == {1, 2, 3}
    flat = [t for tokens in lang.square_tokens for t in tokens]
    assert sorted(flat) == list(range(lang.n_tokens))       # every token fresh, none shared


def test_split_language_is_reproducible_for_a_seed():
    assert Language.split("S", seed=7) == Language.split("S", seed=7)
    assert Language.split("S", seed=7) != Language.split("S", seed=8)


def test_split_language_respects_max_tokens():
    assert max(len(t) for t in Language.split("S", max_tokens=2, seed=0).square_tokens) == 2
    assert Language.split("S", max_tokens=1, seed=0).square_tokens == Language.atomic("S").square_tokens


def test_compositional_language_writes_row_then_column():
    lang = Language.compositional("C")
    assert lang.n_tokens == 16
    # by hand: h8 = 63 -> row h (7), column 8 (8 + 7); b1 = 8 -> row b (1), column 1 (8)
    assert lang.tokens_of("h8") == (7, 15)
    assert lang.tokens_of(8) == (1, 8)


def test_language_from_mapping_accepts_names_and_squares():
    mapping = {mf.square_name(s) if i % 2 else s: (i,) for i, s in enumerate(PLAYABLE)}
    assert Language.from_mapping("M", mapping).square_tokens == Language.atomic("M").square_tokens


@pytest.mark.parametrize("make", [lambda: Language.atomic("A"), lambda: Language.split("S", seed=4),
                                  lambda: Language.compositional("C"),
                                  lambda: Language.from_mapping("R", {s: (59 - i,) for i, s in
                                                                     enumerate(PLAYABLE)})])
def test_language_round_trips_through_json(make):
    lang = make()
    again = Language.from_dict(json.loads(json.dumps(lang.to_dict())))
    assert again == lang and again.kind == lang.kind


@pytest.mark.parametrize("mapping, message", [
    ({s: (i,) for i, s in enumerate(PLAYABLE[:-1])}, "gives no tokens"),
    ({**{s: (i,) for i, s in enumerate(PLAYABLE)}, 27: (60,)}, "centre square"),
    ({s: (0,) if i < 2 else (i,) for i, s in enumerate(PLAYABLE)}, "same tokens"),
    ({s: (i + 1,) for i, s in enumerate(PLAYABLE)}, "unused"),
    ({s: (i, 0) if i == 1 else (i,) for i, s in enumerate(PLAYABLE)}, "one position"),
    ({s: () if i == 0 else (i,) for i, s in enumerate(PLAYABLE)}, "non-empty"),
    ({**{s: (i,) for i, s in enumerate(PLAYABLE)}, 64: (60,)}, "not a square"),
])
def test_bad_mapping_raises_language_error(mapping, message):
    with pytest.raises(LanguageError, match=message):
        Language.from_mapping("bad", mapping)


def test_unknown_kind_raises_language_error():
    with pytest.raises(LanguageError, match="kind"):
        Language("X", "weird", Language.atomic("X").square_tokens)


# --------------------------------------------------------------- language set
def test_two_atomic_languages_with_8_anchors_have_113_ids():
    ls = LanguageSet([Language.atomic("A"), Language.atomic("B")], n_anchors=8, seed=1)
    assert ls.vocab_size == 1 + 60 + 52


def test_ids_match_the_reference_assignment(mixed_set):
    codes, vocab, owner = oracle_for(mixed_set)
    assert mixed_set.vocab_size == vocab
    for j in range(mixed_set.n_languages + 1):
        table = mixed_set.token_ids(j if j < mixed_set.n_languages else "out")
        for s in range(64):
            expected = list(codes[j].get(s, ()))
            assert table[s].tolist() == expected + [-1] * (table.shape[1] - len(expected))


def test_token_language_matches_the_reference(mixed_set):
    _, _, owner = oracle_for(mixed_set)
    assert mixed_set.token_language.tolist() == owner


def test_token_square_names_the_square_of_single_square_ids(mixed_set):
    codes, vocab, _ = oracle_for(mixed_set)
    expected = [set() for _ in range(vocab)]
    for code in codes:
        for s, ids in code.items():
            for i in ids:
                expected[i].add(s)
    assert mixed_set.token_square.tolist() == [q.pop() if len(q) == 1 else -1 for q in expected]
    comp = mixed_set.token_ids(2)
    own = np.unique(comp[comp >= 0])
    own = own[mixed_set.token_language[own] == 2]     # compositional row/column tokens
    assert len(own) == 16 and (mixed_set.token_square[own] == -1).all()


def test_anchored_squares_share_ids_and_nothing_else_does():
    ls = LanguageSet.from_spec("atomic,split,atomic", anchors="a1 c4 h8 d3", seed=2)
    anchored_ids = {i for s in ls.anchors for i in ls.token_ids(0)[s] if i >= 0}
    for a in range(3):
        for b in range(a + 1, 3):
            ids_a = set(ls.token_ids(a)[ls.token_ids(a) >= 0].tolist())
            ids_b = set(ls.token_ids(b)[ls.token_ids(b) >= 0].tolist())
            assert ids_a & ids_b == anchored_ids
    for s in ls.anchors:
        row = ls.token_ids(1)[s]
        assert row[row >= 0].tolist() == ls.token_ids(0)[s].tolist()   # atomic L0: one id


def test_ids_are_contiguous_per_language_then_output():
    ls = LanguageSet.from_spec("atomic,compositional", unified=True)
    assert ls.token_language.tolist() == [-1] + [0] * 60 + [1] * 16 + [2] * 60
    assert ls.output_id_range == (77, 137) and ls.vocab_size == 137


def test_n_anchors_are_drawn_reproducibly_from_playable_squares():
    a = LanguageSet.from_spec("atomic,atomic", n_anchors=20, seed=4).anchors
    assert a == LanguageSet.from_spec("atomic,atomic", n_anchors=20, seed=4).anchors
    assert a != LanguageSet.from_spec("atomic,atomic", n_anchors=20, seed=5).anchors
    assert len(set(a)) == 20 and set(a) <= set(PLAYABLE) and list(a) == sorted(a)


@pytest.mark.parametrize("kwargs, message", [
    (dict(anchors=["d4"]), "centre square"),
    (dict(anchors=[64]), "not a square"),
    (dict(anchors=["z9"]), "not a square"),
    (dict(anchors=["a1", 0]), "twice"),
    (dict(anchors=["a1"], n_anchors=3), "either"),
    (dict(n_anchors=61), "0..60"),
    (dict(anchors=8), "n_anchors"),                    # a count given as anchors
])
def test_bad_anchors_raise_language_error(kwargs, message):
    with pytest.raises(LanguageError, match=message):
        LanguageSet([Language.atomic("A"), Language.atomic("B")], **kwargs)


@pytest.mark.parametrize("spec, message", [("atomic,klingon", "kind"), ("atomic:2", "only 'split'"),
                                           ("split:x", "number"), ("", "comma-separated"),
                                           ("atomic,A=atomic,A=split", "twice")])
def test_bad_spec_raises_language_error(spec, message):
    with pytest.raises(LanguageError, match=message):
        LanguageSet.from_spec(spec)


def test_from_spec_names_kinds_and_output_language():
    ls = LanguageSet.from_spec("atomic, split:2 ,x=compositional", unified=True)
    assert ls.names == ("L0", "L1", "x") and ls.n_languages == 3
    assert [lang.kind for lang in ls.languages] == ["atomic", "split", "compositional"]
    assert max(len(t) for t in ls.languages[1].square_tokens) == 2
    assert ls.output_language == Language.atomic("out")


def test_unknown_language_name_raises_language_error(mixed_set):
    with pytest.raises(LanguageError, match="unknown language 'fr'"):
        mixed_set.language_index("fr")
    with pytest.raises(LanguageError, match="index 9"):
        mixed_set.token_ids(9)


def test_output_language_with_multi_token_squares_is_refused():
    with pytest.raises(LanguageError, match="one token per square"):
        LanguageSet([Language.atomic("A")], output_language=Language.compositional("out"))


def test_context_length_is_the_longest_full_game(mixed_set):
    codes, _, _ = oracle_for(mixed_set)
    assert mixed_set.context_length == context_length(codes[:mixed_set.n_languages])


def test_translation_table_stacks_token_ids(mixed_set):
    table = mixed_set.translation_table
    assert table.shape == (4, 64, mixed_set.k_max)
    for j in range(4):
        ids = mixed_set.token_ids(j)
        assert (table[j, :, :ids.shape[1]] == ids).all() and (table[j, :, ids.shape[1]:] == -1).all()
    assert (table[:, mf.START_SQUARES] == -1).all()


def test_language_set_round_trips_through_json_and_file(mixed_set, tmp_path):
    again = LanguageSet.from_json(mixed_set.to_json())
    assert again == mixed_set and again.anchors == mixed_set.anchors
    assert (again.translation_table == mixed_set.translation_table).all()
    mixed_set.save(tmp_path / "languages.json")
    assert LanguageSet.load(tmp_path / "languages.json") == mixed_set


def test_corrupted_language_set_file_raises_language_error(mixed_set, tmp_path):
    path = tmp_path / "languages.json"
    mixed_set.save(path)
    path.write_text(path.read_text()[:200])
    with pytest.raises(LanguageError, match="languages.json"):
        LanguageSet.load(path)


def test_language_set_dict_with_wrong_vocab_size_is_refused(mixed_set):
    d = mixed_set.to_dict()
    d["vocab_size"] += 1
    with pytest.raises(LanguageError, match="vocab_size"):
        LanguageSet.from_dict(d)


# ------------------------------------------------------------------- encoding
@pytest.mark.parametrize("language", range(4))
def test_encode_matches_the_move_by_move_reference(mixed_set, language):
    games = sample_games()
    codes, _, _ = oracle_for(mixed_set)
    T = mixed_set.context_length
    enc = mixed_set.encode(games, language)
    for g, game in enumerate(games.tolist()):
        tokens, move_index, move_end = encode_game(game, codes[language], T)
        assert enc.tokens[g].tolist() == tokens
        assert enc.move_index[g].tolist() == move_index
        assert enc.move_end[g].tolist() == move_end
    assert enc.tokens.dtype == np.int64 and enc.move_index.dtype == np.int64
    assert enc.move_end.dtype == np.bool_ and enc.language == language


def test_encode_of_torch_tensor_equals_numpy_and_stays_torch(mixed_set):
    games = sample_games()
    for language in range(4):
        expected = mixed_set.encode(games, language)
        got = mixed_set.encode(torch.from_numpy(games), language)
        assert isinstance(got.tokens, torch.Tensor) and got.tokens.dtype == torch.int64
        for name in ("tokens", "move_index", "move_end"):
            assert (getattr(got, name).numpy() == getattr(expected, name)).all(), name


def test_encode_with_per_row_languages_equals_per_language_encoding(mixed_set):
    games = sample_games()
    rows = np.random.default_rng(0).integers(0, 4, size=len(games))
    mixed = mixed_set.encode(games, rows)
    mixed_torch = mixed_set.encode(torch.from_numpy(games), torch.from_numpy(rows))
    for language in range(4):
        one = mixed_set.encode(games[rows == language], language)
        assert (mixed.tokens[rows == language] == one.tokens).all()
        assert (mixed.move_index[rows == language] == one.move_index).all()
        assert (mixed_torch.move_end.numpy()[rows == language] == one.move_end).all()


def test_torch_device_encoder_matches_the_reference_on_cpu_tensors(mixed_set):
    """The encoder used for tensors on accelerators (CPU tensors normally take the numpy
    path), run here on CPU tensors."""
    games = sample_games(120)
    rows = np.random.default_rng(2).integers(0, 4, size=len(games))
    codes, _, _ = oracle_for(mixed_set)
    tokens, move_index, move_end = mixed_set.encoding.encode_torch(torch.from_numpy(games),
                                                           torch.from_numpy(rows))
    for g, game in enumerate(games.tolist()):
        expected = encode_game(game, codes[rows[g]], mixed_set.context_length)
        assert (tokens[g].tolist(), move_index[g].tolist(), move_end[g].tolist()) == expected


def test_encode_with_per_row_fixed_length_languages_equals_reference():
    ls = LanguageSet.from_spec("atomic,atomic,atomic", n_anchors=5)
    games = sample_games(100)
    rows = np.arange(100) % 3
    codes, _, _ = oracle_for(ls)
    enc = ls.encode(games, rows)
    for g, game in enumerate(games.tolist()):
        assert enc.tokens[g].tolist() == encode_game(game, codes[rows[g]], 60)[0]


def _short_rows(g):
    return g[:, :59]


def _centre_square(g):
    g[1, 3] = 27
    return g


def _off_board(g):
    g[1, 3] = 64
    return g


def _move_after_end(g):
    g[2, 5:] = -1
    g[2, 7] = 0
    return g


@pytest.mark.parametrize("bad, error, message", [
    (_short_rows, GameArrayError, "shape"), (_centre_square, InvalidSquareError, "centre"),
    (_off_board, InvalidSquareError, "games\\[1, 3\\]"),
    (_move_after_end, GameArrayError, "after the game's end")])
@pytest.mark.parametrize("like", [np.asarray, torch.from_numpy])
def test_encode_rejects_bad_games(mixed_set, bad, error, message, like):
    with pytest.raises(error, match=message):
        mixed_set.encode(like(bad(mf.generate_games(4, seed=0))), 0)


def _float_games(g):
    return g.astype(np.float32)


def _one_game(g):
    return g[0]


def _minus_two(g):
    g[0, 0] = -2
    return g


def _wide_off_board(g):
    return _off_board(g.astype(np.int64))


BAD_GAMES = [_float_games, _short_rows, _one_game, _off_board, _minus_two, _centre_square,
             _move_after_end, _wide_off_board]


def _refusal(check, games):
    with pytest.raises(mf.MothelloError) as refused:
        check(games)
    return type(refused.value), str(refused.value)


@pytest.mark.parametrize("bad", BAD_GAMES)
def test_encoding_and_validate_games_refuse_the_same_arrays_alike(mixed_set, bad):
    """One rule for a games array: the language set's check (encode, output_ids, Corpus)
    refuses what validate_games refuses, with the same error class and message."""
    games = bad(mf.generate_games(4, seed=0))
    expected = _refusal(mf.validate_games, games)
    assert expected[0] in (GameArrayError, InvalidSquareError)
    assert _refusal(lambda g: mixed_set.encode(g, 0), games) == expected
    assert _refusal(lambda g: mixed_set.encode(torch.from_numpy(g), 0), games) == expected
    assert _refusal(mixed_set.output_ids, games) == expected
    assert _refusal(lambda g: mf.Corpus(g, mixed_set, batch_size=2), games) == expected


@pytest.mark.parametrize("bad", [_off_board, _minus_two, _centre_square, _move_after_end])
def test_the_square_check_names_the_entry_on_tensors_as_on_arrays(bad):
    """The entry check that `_check_games` runs on a device, here on CPU tensors."""
    from mothello_fast import othello
    games = bad(mf.generate_games(4, seed=0)).astype(np.int64)
    expected = _refusal(lambda g: othello.check_game_squares(g, othello.PLAYABLE_LOOKUP, "games"),
                        games)
    lut = torch.from_numpy(othello.PLAYABLE_LOOKUP)
    assert _refusal(lambda g: othello.check_game_squares(torch.from_numpy(g), lut, "games"),
                    games) == expected


def test_encode_rejects_output_language(mixed_set):
    with pytest.raises(LanguageError, match="output-only"):
        mixed_set.encode(mf.generate_games(2, seed=0), "out")


# ------------------------------------------------------------------- decoding
@pytest.mark.parametrize("language", range(4))
def test_decode_inverts_encode(mixed_set, language):
    games = sample_games()
    tokens = mixed_set.encode(games, language).tokens
    assert (mixed_set.decode(tokens, language) == games).all()
    assert (mixed_set.decode(tokens) == games).all()


def test_decode_matches_the_greedy_reference(mixed_set):
    games = sample_games(60)
    codes, _, _ = oracle_for(mixed_set)
    tokens = mixed_set.encode(games, 2).tokens
    for row, game in zip(tokens.tolist(), mixed_set.decode(tokens).tolist()):
        assert decode_row(row, codes[2]) == game


def test_decode_of_tensor_returns_int8_tensor(mixed_set):
    games = sample_games(50)
    tokens = torch.from_numpy(mixed_set.encode(games, 1).tokens)
    out = mixed_set.decode(tokens)
    assert out.dtype == torch.int8 and (out.numpy() == games).all()


def test_decode_infers_each_rows_language(mixed_set):
    games = sample_games(80)
    rows = np.arange(80) % 4
    assert (mixed_set.decode(mixed_set.encode(games, rows).tokens) == games).all()


def test_decode_rejects_a_token_of_no_language(mixed_set):
    tokens = mixed_set.encode(mf.generate_games(3, seed=1), 0).tokens
    tokens[1, 4] = mixed_set.vocab_size
    with pytest.raises(LanguageError, match="row 1, position 4.*no language"):
        mixed_set.decode(tokens)


def test_decode_rejects_output_language_ids(mixed_set):
    tokens = mixed_set.encode(mf.generate_games(3, seed=1), 0).tokens
    tokens[0, 0] = mixed_set.output_id_range[0]
    with pytest.raises(LanguageError, match="output-only"):
        mixed_set.decode(tokens)


def test_decode_rejects_a_truncated_multi_token_move():
    ls = LanguageSet.from_spec("split", seed=0)
    games = mf.generate_games(1, seed=3)
    enc = ls.encode(games, 0)
    multi = np.flatnonzero(enc.move_end[0] & (np.roll(enc.move_end[0], 1) == 0))
    last_of_multi = int(multi[multi > 0][-1])     # last sub-token of a multi-token move
    tokens = enc.tokens.copy()
    tokens[0, last_of_multi:] = 0                  # cut the row inside that move
    with pytest.raises(LanguageError, match="truncated"):
        ls.decode(tokens)


def test_decode_rejects_a_row_mixing_languages():
    ls = LanguageSet.from_spec("atomic,atomic", n_anchors=5)
    games = mf.generate_games(2, seed=0)
    tokens = ls.encode(games, 0).tokens
    tokens[:, 10:] = ls.encode(games, 1).tokens[:, 10:]
    with pytest.raises(LanguageError, match="mixes languages"):
        ls.decode(tokens)
    with pytest.raises(LanguageError, match="mix of languages"):
        ls.decode(tokens, "L0")


def test_decode_rejects_tokens_after_padding(mixed_set):
    tokens = mixed_set.encode(sample_games(40), 0).tokens
    row = int(np.flatnonzero((tokens == 0).any(1))[0])
    tokens[row, -1] = tokens[row, 0] or 1
    with pytest.raises(LanguageError, match="after padding"):
        mixed_set.decode(tokens)


@pytest.mark.parametrize("T", range(6))
def test_decode_reads_rows_shorter_than_the_longest_move(T):
    """The first T tokens of a row (e.g. a short generation) decode to the moves they hold,
    even when some square of the set takes more tokens than the row has."""
    ls = LanguageSet.from_spec("atomic,split:5", seed=0)
    assert ls.k_max == 5
    games = mf.generate_games(20, seed=0)
    for language in range(2):
        enc = ls.encode(games, language)
        whole = enc.move_end[:, T - 1] if T else np.ones(len(games), bool)  # cut at a move's end
        n_moves = enc.move_end[whole, :T].sum(1)
        expected = np.where(np.arange(60) < n_moves[:, None], games[whole], -1)
        assert (ls.decode(enc.tokens[whole, :T]) == expected).all()
        assert (ls.decode(enc.tokens[whole, :T], language) == expected).all()


# -------------------------------------------------------------------- targets
def test_standard_targets_match_the_reference(mixed_set):
    games = sample_games(100)
    for language, like in [(0, np.asarray), (1, torch.from_numpy), (2, np.asarray)]:
        enc = mixed_set.encode(like(games), language)
        targets = np.asarray(mixed_set.make_targets(enc, "standard"))
        for row, expected in zip(np.asarray(enc.tokens).tolist(), targets.tolist()):
            assert standard_targets(row) == expected


@pytest.mark.parametrize("language", range(4))
def test_unified_targets_match_the_move_by_move_reference(mixed_set, language):
    games = sample_games(150)
    codes, _, _ = oracle_for(mixed_set)
    T = mixed_set.context_length
    for like in (np.asarray, torch.from_numpy):
        enc = mixed_set.encode(like(games), language)
        targets = np.asarray(mixed_set.make_targets(enc, "unified"))
        for g, game in enumerate(games.tolist()):
            assert targets[g].tolist() == unified_targets(game, codes[language], codes[-1], T)


def test_unified_targets_without_the_encoded_games_decode_them_from_the_tokens(mixed_set):
    games = sample_games(50)
    enc = mixed_set.encode(games, 3)
    bare = type(enc)(enc.tokens, enc.move_index, enc.move_end, enc.language)
    assert (mixed_set.make_targets(bare, "unified") == mixed_set.make_targets(enc, "unified")).all()


def test_output_ids_match_the_reference(mixed_set):
    games = sample_games(50)
    codes, _, _ = oracle_for(mixed_set)
    out = mixed_set.output_ids(games)
    expected = [[codes[-1][s][0] if s >= 0 else -100 for s in game] for game in games.tolist()]
    assert out.tolist() == expected


def test_unified_objective_without_output_language_raises():
    ls = LanguageSet.from_spec("atomic,split")
    enc = ls.encode(mf.generate_games(2, seed=0), 0)
    with pytest.raises(LanguageError, match="output language"):
        ls.make_targets(enc, "unified")
    with pytest.raises(LanguageError, match="objective"):
        ls.make_targets(enc, "masked")


def test_importing_languages_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, mothello_fast as mf; ls = mf.LanguageSet.from_spec('split');"
            "ls.decode(ls.encode(mf.generate_games(2, seed=0), 0).tokens);"
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_encode_does_not_depend_on_the_thread_count(mixed_set):
    games = mf.generate_games(20000, seed=9)          # several chunks
    rows = np.arange(len(games)) % 4
    one = mixed_set.encode(games, rows, threads=1)
    two = mixed_set.encode(games, rows, threads=2)
    assert all((getattr(one, f) == getattr(two, f)).all() for f in FIELDS)


def test_encode_into_reused_arrays_equals_fresh_encode(mixed_set):
    games = sample_games(200)
    buffer = mixed_set.encode(sample_games(200, seed=5), 1)
    again = mixed_set.encode(games, 1, out=buffer)
    fresh = mixed_set.encode(games, 1)
    assert again.tokens is buffer.tokens
    assert all((getattr(again, f) == getattr(fresh, f)).all() for f in FIELDS)
    with pytest.raises(LanguageError, match="out"):
        mixed_set.encode(games[:10], 1, out=buffer)


def test_split_with_bad_max_tokens_raises_language_error():
    with pytest.raises(LanguageError, match="max_tokens=0"):
        Language.split("S", max_tokens=0, seed=0)


def test_languages_are_found_by_object_including_the_output_language(mixed_set):
    assert mixed_set.language_index(mixed_set.languages[2]) == 2
    assert mixed_set.language_index(mixed_set.output_language) == mixed_set.n_languages
    out_ids = mixed_set.token_ids(mixed_set.output_language)
    first, stop = mixed_set.output_id_range
    assert sorted(out_ids[out_ids >= 0].tolist()) == list(range(first, stop))


@pytest.mark.parametrize("rows, dtype", [(np.array([0.7, 1.9]), "float64"),
                                         (torch.tensor([True, False]), "bool")])
def test_tensor_games_refuse_non_integer_per_row_languages(rows, dtype):
    ls = LanguageSet.from_spec("atomic,split")
    games = torch.from_numpy(mf.generate_games(2, seed=0))
    with pytest.raises(LanguageError, match=f"language of dtype (torch.)?{dtype}"):
        ls.encode(games, rows)


def _overlong_and_short_game(ls, language=0):
    """Row 0 repeats the square with the most tokens in `language` 60 times (too long for
    the context); row 1 is a short real game."""
    ids = ls.token_ids(language)
    longest = int(np.argmax((ids >= 0).sum(1)))
    games = np.full((2, 60), longest, dtype=np.int8)
    games[1] = -1
    games[1, :3] = [19, 18, 17]
    return games


def test_device_encoding_of_a_game_too_long_never_writes_into_the_next_row():
    import torch
    ls = LanguageSet.from_spec("split", seed=0)
    games = _overlong_and_short_game(ls)
    tokens, move_index, move_end = ls.encoding.encode_torch(torch.from_numpy(games), 0)   # the CUDA path
    alone = ls.encode(games[1:], 0)
    assert np.array_equal(tokens[1].numpy(), alone.tokens[0])
    assert np.array_equal(move_end[1].numpy(), alone.move_end[0])


def test_games_too_long_for_the_context_are_refused_on_every_path():
    import torch
    ls = LanguageSet.from_spec("atomic,split", seed=0)
    games = _overlong_and_short_game(ls, "L1")
    with pytest.raises(LanguageError, match="game 0 does not fit the context length"):
        ls.encode(games, "L1")                                  # the compiled encoder
    with pytest.raises(LanguageError, match="game 0 does not fit the context length"):
        ls.encoding.check_fits(torch.from_numpy(games), None)           # what devices and Corpus use
    ls.encoding.check_fits(torch.from_numpy(games[1:]), None)           # a real game fits


def test_a_zero_dimensional_array_is_one_language():
    ls = LanguageSet.from_spec("atomic,split", seed=0)
    games = mf.generate_games(3, seed=2)
    assert np.array_equal(ls.encode(games, np.array(1)).tokens, ls.encode(games, 1).tokens)


def test_select_languages_checks_a_choice_of_input_languages():
    from mothello_fast.errors import ConceptError
    ls = LanguageSet.from_spec("atomic,split,compositional", unified=True)
    assert ls.select_languages() == ["L0", "L1", "L2"]
    assert ls.select_languages(("L2", "L0")) == ["L2", "L0"]
    assert ls.select_languages("L1") == ["L1"]            # one name, not its characters
    with pytest.raises(LanguageError, match=r"\['out'\] are not input languages"):
        ls.select_languages(["L0", "out"])               # the output-only language
    with pytest.raises(ConceptError, match=r"languages=\['L1'\]: expected at least 2"):
        ls.select_languages(["L1"], least=2, error=ConceptError)
    with pytest.raises(LanguageError, match="languages is empty"):
        ls.select_languages([])
