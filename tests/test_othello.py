"""The compiled engine against the slow pure-Python oracle (tests/othello_oracle.py),
the published perft table, and the API's promises."""
import random
import subprocess
import sys

import numpy as np
import pytest

import mothello_fast as mf
from mothello_fast import BLACK, WHITE, Board
from othello_oracle import OracleGame, oracle_labels, oracle_perft, random_game

# perft(9) is the first depth whose count depends on the pass convention (24 positions at
# ply 8 have a pass), perft(10) the first where games that end earlier (228 at ply 9) count
# as leaves; both take well under a second.
PERFT = [4, 12, 56, 244, 1396, 8200, 55092, 390216, 3_005_288, 24_571_284]


@pytest.fixture(scope="module")
def games():
    return mf.generate_games(2000, seed=12345)


@pytest.fixture(scope="module")
def oracle(games):
    return [oracle_labels([int(s) for s in row if s >= 0]) for row in games]


# ---- squares -------------------------------------------------------------

def test_square_names_follow_othello_world():
    assert mf.square_name(28) == "d5" and mf.parse_square("d5") == 28
    assert [mf.square_name(s) for s in (0, 7, 56, 63)] == ["a1", "a8", "h1", "h8"]
    assert all(mf.parse_square(mf.square_name(s)) == s for s in range(64))
    assert mf.parse_square("C4") == 19 and mf.parse_moves("c4,c3 c2") == [19, 18, 17]


@pytest.mark.parametrize("bad", [64, -1, "i1", "a9", "a", 3.0, True, None])
def test_bad_square_is_named(bad):
    with pytest.raises(mf.InvalidSquareError, match="square"):
        mf.parse_square(bad) if not isinstance(bad, int) or isinstance(bad, bool) \
            else mf.square_name(bad)


# ---- perft ---------------------------------------------------------------

@pytest.mark.parametrize("depth", range(1, 11))
def test_perft_matches_published_table(depth):
    assert mf.perft(depth) == PERFT[depth - 1]


@pytest.mark.parametrize("depth", range(1, 6))
def test_perft_matches_oracle(depth):
    assert mf.perft(depth) == oracle_perft(depth)


@pytest.mark.slow
@pytest.mark.parametrize("depth,leaves", [(11, 212_258_800)])
def test_perft_deep(depth, leaves):
    assert mf.perft(depth) == leaves


@pytest.mark.parametrize("depth", [7, 9, 10])
def test_perft_split_into_subtrees_counts_what_one_compiled_call_counts(depth):
    from mothello_fast import _engine
    assert mf.perft(depth) == _engine.perft(depth)


@pytest.mark.parametrize("depth", [-1, 61, 10**6, 2.0, True])
def test_perft_refuses_a_depth_beyond_a_game(depth):
    with pytest.raises(mf.MothelloError, match=f"depth={depth!r}: expected an integer in 0..60"):
        mf.perft(depth)


def test_a_long_perft_stops_at_ctrl_c_within_a_second():
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen(
        [sys.executable, "-c", "import sys, mothello_fast as mf; print('go', flush=True); "
                               "mf.perft(16)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "go"
    time.sleep(0.5)   # well into the count (perft(16) would take hours)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=5)
    finally:
        process.kill()
    assert time.monotonic() - sent < 1.0
    assert "KeyboardInterrupt" in process.stderr.read()


# ---- generation ------------------------------------------------------------

def test_generated_games_are_legal_and_complete_under_oracle(games):
    for row in games:
        moves = [int(s) for s in row if s >= 0]
        assert (row[len(moves):] == -1).all()  # -1 only after the end
        game = OracleGame()
        for move in moves:
            game.play(move)
        assert game.over(), "a generated game stopped before neither side could move"


def test_moves_are_uniform_among_legal_moves():
    games = mf.generate_games(40_000, seed=7)
    first = np.bincount(games[:, 0], minlength=64)[[19, 26, 37, 44]]
    assert first.sum() == 40_000
    # each of the 4 openings with p = 1/4: 5 standard deviations is ~430 games
    assert np.abs(first - 10_000).max() < 5 * np.sqrt(40_000 * 0.25 * 0.75)
    after_f5 = games[games[:, 0] == 44][:, 1]  # white's replies to f5: d6 f4 f6 (29, 43, 45)
    counts = np.bincount(after_f5, minlength=64)
    assert set(np.flatnonzero(counts)) == {29, 43, 45}
    expected = len(after_f5) / 3
    assert np.abs(counts[[29, 43, 45]] - expected).max() < 5 * np.sqrt(len(after_f5) * 2 / 9)


def test_each_move_is_uniform_among_the_k_legal_moves():
    from scipy.stats import chi2
    games = mf.generate_games(20_000, seed=17)
    compact = mf.replay_bitboards(games)
    legal, square = compact["legal_next"][:, :-1], games[:, 1:].astype(np.int64)
    played = square >= 0
    legal, square = legal[played], square[played].astype(np.uint64)
    assert ((legal >> square) & np.uint64(1)).all()
    k = np.bitwise_count(legal)
    rank = np.bitwise_count(legal & ((np.uint64(1) << square) - np.uint64(1)))  # among the legal
    statistic, dof = 0.0, 0
    for n_legal in range(2, int(k.max()) + 1):      # chi-square per number of legal moves, pooled
        counts = np.bincount(rank[k == n_legal], minlength=n_legal)
        if counts.sum() < 20 * n_legal:
            continue
        expected = counts.sum() / n_legal
        statistic += float(((counts - expected) ** 2 / expected).sum())
        dof += n_legal - 1
    assert dof > 100 and chi2.sf(statistic, dof) > 1e-4, (statistic, dof)


def test_same_seed_same_games_whatever_the_threads():
    reference = mf.generate_games(20_000, seed=99, threads=1)
    for threads in (2, 3):
        assert np.array_equal(mf.generate_games(20_000, seed=99, threads=threads), reference)
    assert not np.array_equal(mf.generate_games(20_000, seed=100, threads=1), reference)


def test_first_game_offsets_a_larger_call():
    whole = mf.generate_games(1000, seed=3)
    assert np.array_equal(mf.generate_games(300, seed=3, first_game=500), whole[500:800])


def test_prefix_forces_the_opening():
    games = mf.generate_games(500, seed=1, prefix="c4 c3 c2")
    assert (games[:, :3] == [19, 18, 17]).all()
    assert len({tuple(g) for g in games[:, 3:8].tolist()}) > 100  # random after it
    mf.replay(games)  # legal throughout


def test_prefix_through_a_pass(games):
    replayed = mf.replay(games)
    passes = np.argwhere((replayed.player[:, 1:] == replayed.player[:, :-1])
                         & (replayed.player[:, 1:] > 0))
    g, ply = map(int, passes[np.argmin(passes[:, 1])])   # the earliest: many moves after it
    prefix = games[g, :ply + 2]     # its last move is played after the opponent passed
    out = mf.generate_games(200, seed=2, prefix=prefix.tolist())
    assert (out[:, :ply + 2] == prefix).all()
    labels = mf.replay(out)         # legal throughout
    for i, row in enumerate(out[:50]):
        expected = oracle_labels([int(s) for s in row if s >= 0])
        assert labels.n_moves[i] == len(expected)
        assert np.array_equal(labels.board[i, :len(expected)], [b for b, _, _, _ in expected])


@pytest.mark.parametrize("prefix", [[19, -1, 18], [19, 64], 5, [19, None]])
def test_a_prefix_that_is_not_all_squares_is_refused(prefix):
    with pytest.raises(mf.InvalidSquareError):
        mf.generate_games(5, seed=1, prefix=prefix)


@pytest.mark.parametrize("moves", [5, None, 3.5])
def test_board_from_moves_names_what_is_not_a_move_list(moves):
    with pytest.raises(mf.InvalidSquareError, match="expected names"):
        mf.Board.from_moves(moves)


def test_a_game_row_ends_at_its_padding_and_nothing_may_follow_it():
    assert mf.Board.from_moves([19, 18, -1, -1]).moves == [19, 18]
    with pytest.raises(mf.InvalidSquareError, match="follows the -1"):
        mf.Board.from_moves([19, -1, 18])


def test_illegal_prefix_is_refused():
    with pytest.raises(mf.IllegalMoveError, match="'a1'"):
        mf.generate_games(5, seed=1, prefix="c4 a1")


@pytest.mark.parametrize("kwargs", [{"n": -1, "seed": 0}, {"n": 3, "seed": -1},
                                    {"n": 3, "seed": 0, "threads": 0}, {"n": 2.5, "seed": 0}])
def test_bad_generation_arguments_are_named(kwargs):
    with pytest.raises(ValueError, match=next(k for k in kwargs if k != "seed" or kwargs["seed"] < 0)):
        mf.generate_games(kwargs.pop("n"), **kwargs)


# ---- replay --------------------------------------------------------------

def test_replay_equals_oracle(games, oracle):
    replayed = mf.replay(games)
    for g, labels in enumerate(oracle):
        n = len(labels)
        assert replayed.n_moves[g] == n
        assert np.array_equal(replayed.board[g, :n], [b for b, _, _, _ in labels])
        assert np.array_equal(replayed.player[g, :n], [p for _, p, _, _ in labels])
        assert np.array_equal(replayed.legal_next[g, :n], [m for _, _, m, _ in labels])
        assert np.array_equal(replayed.flipped[g, :n], [f for _, _, _, f in labels])
        # after the end: all zero
        assert not replayed.board[g, n:].any() and not replayed.player[g, n:].any()
        assert not replayed.legal_next[g, n:].any() and not replayed.flipped[g, n:].any()


def test_relative_board_is_relative_to_the_side_to_move(games, oracle):
    replayed = mf.replay(games[:200])
    relative = replayed.relative_board()
    for g, labels in enumerate(oracle[:200]):
        game = OracleGame()
        for i, move in enumerate(int(s) for s in games[g] if s >= 0):
            game.play(move)
            to_move = game.to_move if not game.over() else 3 - labels[i][1]
            expected = [0 if c == 0 else 1 if c == to_move else 2 for c in game.board()]
            assert np.array_equal(relative[g, i], expected)


def test_bitboard_replay_agrees_with_expanded_replay(games):
    full, compact = mf.replay(games[:300]), mf.replay_bitboards(games[:300])
    bits = lambda bb: ((bb[..., None] >> np.arange(64, dtype=np.uint64)) & 1).astype(bool)
    assert np.array_equal(bits(compact["black"]), full.board == BLACK)
    assert np.array_equal(bits(compact["white"]), full.board == WHITE)
    assert np.array_equal(bits(compact["legal_next"]), full.legal_next)
    assert np.array_equal(bits(compact["flipped"]), full.flipped)
    assert np.array_equal(compact["player"], full.player)


def test_replay_names_game_ply_and_move_of_an_illegal_move(games):
    bad = games[:5].copy()
    bad[3, 7] = bad[3, 2]  # an occupied square
    name = mf.square_name(int(bad[3, 7]))
    with pytest.raises(mf.IllegalMoveError, match=rf"game 3, ply 7: move '{name}'.*legal: "):
        mf.replay(bad)


def test_replay_refuses_a_move_after_the_end():
    game = np.full((1, 60), -1, np.int8)
    game[0, :2] = [19, 18]
    game[0, 4] = 17
    # a bad array (validate_games' rule), before any replay
    with pytest.raises(mf.GameArrayError,
                       match=r"games\[0, 4\] = 17 comes after the game's end \(-1 at ply 2\)"):
        mf.replay(game)


@pytest.mark.parametrize("bad,error,pattern", [
    (np.zeros((2, 60), np.float32), mf.GameArrayError, "dtype float32"),
    (np.zeros((2, 59), np.int8), mf.GameArrayError, r"shape \(2, 59\)"),
    (np.zeros(60, np.int8), mf.GameArrayError, r"shape \(60,\)"),
    (np.full((2, 60), 64, np.int16), mf.InvalidSquareError, r"games\[0, 0\] = 64"),
    (np.full((2, 60), -2, np.int64), mf.InvalidSquareError, r"games\[0, 0\] = -2"),
    (np.full((2, 60), 27, np.int8), mf.InvalidSquareError, r"games\[0, 0\] = 27.*centre"),
    # not -1 read through int64
    (np.full((2, 60), 2**64 - 1, np.uint64), mf.InvalidSquareError, r"games\[0, 0\] = 18446744"),
])
def test_replay_refuses_bad_arrays(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        mf.replay(bad)


def test_replay_refuses_a_move_after_the_game_is_over():
    games = mf.generate_games(20_000, seed=1)
    row = games[mf.game_lengths(games) < 60][0].copy()   # ends with empty squares left
    n = int((row >= 0).sum())
    board = Board.from_moves(row)
    assert board.is_game_over() and board.legal_moves == []
    row[n] = next(s for s in range(64) if board.piece_at(s) == mf.EMPTY)
    for replay in (mf.replay, mf.replay_bitboards):
        with pytest.raises(mf.IllegalMoveError, match=rf"game 0, ply {n}: .*legal: \(none\)"):
            replay(row[None])


def test_replay_accepts_other_integer_dtypes(games):
    assert np.array_equal(mf.replay(games[:20].astype(np.int64)).board, mf.replay(games[:20]).board)


def test_game_lengths(games, oracle):
    assert mf.game_lengths(games).tolist() == [len(x) for x in oracle]


# ---- Board ----------------------------------------------------------------

def test_board_start_position():
    board = Board()
    assert board.legal_moves == [19, 26, 37, 44] and board.turn == BLACK
    assert board.score() == (2, 2) and not board.is_game_over() and board.ply == 0
    assert board.board().tolist() == OracleGame().board()


def test_board_follows_oracle_through_random_games_with_passes():
    rng = random.Random(5)
    saw_pass = False
    for _ in range(30):
        moves = random_game(rng)
        board, game = Board(), OracleGame()
        for move in moves:
            assert board.legal_moves == game.legal() and board.turn == game.to_move
            before = board.turn
            board.push(move)
            game.play(move)
            saw_pass |= not game.over() and board.turn == before
            assert board.board().tolist() == game.board()
        assert board.is_game_over() and board.legal_moves == []
        black, white = board.score()
        assert (black, white) == (game.board().count(BLACK), game.board().count(WHITE))
        assert board.winner() == (BLACK if black > white else WHITE if white > black else None)
    assert saw_pass, "no game with a pass in the sample; widen it"


def test_push_pop_restore_the_position():
    board = Board.from_moves("f5 d6 c3 d3 c4")
    snapshot = board.copy()
    board.push("f4")
    assert board != snapshot
    assert board.pop() == mf.parse_square("f4")
    assert board == snapshot and board.moves == snapshot.moves
    with pytest.raises(mf.IllegalMoveError, match="no move to take back"):
        Board().pop()


def test_push_illegal_move_says_what_is_legal():
    with pytest.raises(mf.IllegalMoveError,
                       match=r"move 'a1' \(0\) is not legal at ply 0; legal: c4 d3 e6 f5"):
        Board().push("a1")


def test_board_text_and_repr():
    board = Board.from_moves("c4")
    text = str(board)
    assert text.splitlines()[0] == "  1 2 3 4 5 6 7 8"
    assert text.splitlines()[3] == "c . . * X * . . ."  # c4 black; c3, c5 legal for white
    assert "white to move; black 4, white 1" in text
    assert repr(board) == "Board.from_moves('c4')"
    assert eval(repr(board), {"Board": Board}) == board


def test_from_moves_stops_at_padding(games):
    board = Board.from_moves(games[0].tolist())
    assert board.ply == mf.game_lengths(games[:1])[0] and board.is_game_over()


def test_engine_import_does_not_need_torch():
    code = "import sys, mothello_fast as mf; mf.generate_games(3, seed=0); mf.replay(mf.generate_games(3, seed=0)); " \
           "assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_replay_into_a_reused_buffer_equals_a_fresh_replay(games):
    buffer = mf.replay(games[:100])
    again = mf.replay(games[100:160], out=buffer)
    fresh = mf.replay(games[100:160])
    for field in ("board", "player", "legal_next", "flipped", "n_moves"):
        assert np.array_equal(getattr(again, field), getattr(fresh, field))
    assert np.shares_memory(again.board, buffer.board)
    with pytest.raises(ValueError, match="out holds 100 games"):
        mf.replay(games[:150], out=buffer)


@pytest.mark.skipif(not mf._engine.FAST_PDEP, reason="this CPU has no fast pdep path")
def test_pdep_and_portable_generation_paths_give_the_same_games():
    prefix = np.array([19, 18], np.int8)
    fast, portable = np.empty((3000, 60), np.int8), np.empty((3000, 60), np.int8)
    mf._engine.generate_into(fast, 11, 7, prefix, True)
    mf._engine.generate_into(portable, 11, 7, prefix, False)
    assert np.array_equal(fast, portable)
    assert np.array_equal(fast, mf.generate_games(3000, seed=11, first_game=7, prefix="c4 c3"))


def test_next_player_after_a_row_cut_just_before_a_pass(games):
    replayed = mf.replay(games)
    same = np.argwhere(replayed.player[:, 1:] == replayed.player[:, :-1])
    g, ply = map(int, same[0])
    # a real pass: the player of move ply also plays move ply + 1, a move of the game
    assert ply + 1 < replayed.n_moves[g] and games[g, ply + 1] >= 0
    cut = games[g].copy()
    cut[ply + 1:] = -1           # the row ends with the move after which the opponent passes
    board = Board.from_moves(cut.tolist())
    short = mf.replay(cut[None])
    assert short.next_player[0, ply] == board.turn == short.player[0, ply]
    relative, colours = short.relative_board()[0, ply], board.board()
    assert np.array_equal(relative, np.where(colours == 0, 0, np.where(colours == board.turn, 1, 2)))


def test_first_game_past_int64_is_refused():
    with pytest.raises(mf.GameArrayError, match=f"first_game={2**63 - 1}"):
        mf.generate_games(2, seed=0, first_game=2**63 - 1)
    assert mf.generate_games(1, seed=0, first_game=2**63 - 1).shape == (1, 60)


def test_replay_into_a_buffer_of_the_wrong_dtype_is_refused(games):
    import dataclasses
    buffer = mf.replay(games[:10])
    wrong = dataclasses.replace(buffer, player=buffer.player.astype(np.int64))
    with pytest.raises(mf.GameArrayError, match=r"out.player is int64 \(10, 60\); expected .*uint8"):
        mf.replay(games[:10], out=wrong)


@pytest.mark.parametrize("board, to_move, match", [
    (np.zeros((2, 64), np.int8), np.array([7, 1]), "to_move holds 7 at \\(0,\\)"),
    (np.full((2, 64), 9, np.int8), np.array([1, 2]), "board holds 9"),
    (np.zeros((59, 64), np.int8), np.ones(60, np.uint8), "board has shape \\(59, 64\\)"),
    (np.zeros((2, 64)), np.array([1, 2]), "board of dtype float64")])
def test_relative_labels_check_their_values_and_shapes(board, to_move, match):
    with pytest.raises(mf.GameArrayError, match=match):
        mf.relative_board(board, to_move)


def test_next_player_checks_its_player_values():
    with pytest.raises(mf.GameArrayError, match="player holds 7"):
        mf.othello.next_player(np.full((1, 60), 7, np.uint8))
