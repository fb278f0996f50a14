# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Batch entry points into the C bitboard core (csrc/othello.h).

Every function here takes or returns whole arrays; the loops run without the
GIL so that Python threads can run them in parallel over chunks of games.
The public API is in mothello_fast.othello; these names are private.
"""
from libc.stdint cimport int8_t, uint8_t, uint64_t, int64_t
from libc.string cimport memcpy

import numpy as np
cimport numpy as cnp

cnp.import_array()

cdef extern from "othello.h" nogil:
    ctypedef uint64_t bb_t
    bb_t START_BLACK
    bb_t START_WHITE
    bb_t legal_moves(bb_t me, bb_t opp)
    bb_t flips_for(bb_t me, bb_t opp, int sq)
    int fast_pdep_available()
    void generate_batch(int8_t *out, int64_t n, uint64_t seed, int64_t first_game,
                        const int8_t *prefix, int n_prefix, int use_pdep)
    int replay_game(const int8_t *game, bb_t *black, bb_t *white, uint8_t *player,
                    bb_t *legal_next, bb_t *flipped)
    uint64_t perft_rec(bb_t me, bb_t opp, int depth, int passed)

START = (int(START_BLACK), int(START_WHITE))


def legal(uint64_t me, uint64_t opp):
    """Legal-move bitboard of the side owning `me` (one position)."""
    return legal_moves(me, opp)


def legal_into(const uint64_t[::1] me, const uint64_t[::1] opp, uint64_t[::1] out):
    """out[i] = legal-move bitboard of the side owning me[i] against opp[i] (many positions)."""
    cdef Py_ssize_t i, n = me.shape[0]
    with nogil:
        for i in range(n):
            out[i] = legal_moves(me[i], opp[i])


def flips(uint64_t me, uint64_t opp, int square):
    """Bitboard of `opp` discs flipped when `me` plays `square` (one position)."""
    return flips_for(me, opp, square)


def perft(int depth):
    """Leaves at `depth` from the start position (depth >= 1)."""
    return perft_from(START_BLACK, START_WHITE, depth, False)


def perft_from(uint64_t me, uint64_t opp, int depth, bint passed):
    """Leaves at `depth` (>= 1) below a position: `me` to move against `opp`, `passed`
    when the previous ply was a pass. Runs without the GIL and without a check for
    signals: callers keep each call small (othello.perft splits the tree)."""
    cdef uint64_t n
    with nogil:
        n = perft_rec(me, opp, depth, passed)
    return n


#: Whether generation uses the pdep instruction on this CPU (same games either way).
FAST_PDEP = bool(fast_pdep_available())


def generate_into(int8_t[:, ::1] out, uint64_t seed, int64_t first_game, const int8_t[::1] prefix,
                  bint use_pdep=FAST_PDEP):
    """Fill `out` [n, 60] with random games; row i is game number first_game + i."""
    cdef int n_prefix = prefix.shape[0]
    cdef const int8_t *p = &prefix[0] if n_prefix > 0 else NULL
    if out.shape[0] == 0:
        return
    with nogil:
        generate_batch(&out[0, 0], out.shape[0], seed, first_game, p, n_prefix, use_pdep)


def replay_bitboards_into(const int8_t[:, ::1] games, uint64_t[:, ::1] black, uint64_t[:, ::1] white,
                          uint8_t[:, ::1] player, uint64_t[:, ::1] legal_next, uint64_t[:, ::1] flipped,
                          int64_t[::1] status):
    """Replay games [n, 60] into per-ply bitboards; status[i] is the number of
    moves of game i, or -(ply + 1) at its first illegal move (the game's later
    rows are then undefined)."""
    cdef Py_ssize_t i, n = games.shape[0]
    with nogil:
        for i in range(n):
            status[i] = replay_game(&games[i, 0], &black[i, 0], &white[i, 0], &player[i, 0],
                                    &legal_next[i, 0], &flipped[i, 0])


# Each byte value -> its 8 bits as 8 bytes (0 or 1), for expanding bitboards.
cdef uint64_t BYTE_TO_BITS[256]
cdef int _b, _k
for _b in range(256):
    BYTE_TO_BITS[_b] = 0
    for _k in range(8):
        if (_b >> _k) & 1:
            BYTE_TO_BITS[_b] |= (<uint64_t>1) << (8 * _k)


cdef inline void expand_bits(uint64_t x, uint8_t *out, uint8_t value) noexcept nogil:
    """Write 64 bytes: out[i] = value if bit i of x is set else 0 (value in 1..255)."""
    cdef int k
    cdef uint64_t word
    for k in range(8):
        word = BYTE_TO_BITS[(x >> (8 * k)) & 0xFF] * value
        memcpy(out + 8 * k, &word, 8)


def replay_labels_into(const int8_t[:, ::1] games, int8_t[:, :, ::1] board, uint8_t[:, ::1] player,
                       uint8_t[:, :, ::1] legal_next, uint8_t[:, :, ::1] flipped,
                       int64_t[::1] status):
    """Replay games [n, 60] straight into expanded labels:
    board [n, 60, 64] (0 empty, 1 black, 2 white), player [n, 60],
    legal_next and flipped [n, 60, 64] as 0/1. status as in replay_bitboards_into."""
    cdef Py_ssize_t i, n = games.shape[0]
    cdef int ply, s
    cdef uint64_t bk[60]
    cdef uint64_t wt[60]
    cdef uint64_t lg[60]
    cdef uint64_t fl[60]
    cdef uint64_t w1, w2
    cdef uint8_t *row
    with nogil:
        for i in range(n):
            s = replay_game(&games[i, 0], bk, wt, &player[i, 0], lg, fl)
            status[i] = s
            for ply in range(60):
                row = <uint8_t *> &board[i, ply, 0]
                for s in range(8):
                    w1 = BYTE_TO_BITS[(bk[ply] >> (8 * s)) & 0xFF]
                    w2 = BYTE_TO_BITS[(wt[ply] >> (8 * s)) & 0xFF] * 2
                    w1 = w1 | w2
                    memcpy(row + 8 * s, &w1, 8)
                expand_bits(lg[ply], &legal_next[i, ply, 0], 1)
                expand_bits(fl[ply], &flipped[i, ply, 0], 1)


def dedup_first_indices(const int8_t[:, ::1] games):
    """Indices of the first occurrence of each distinct row, in order, in O(n)
    expected time (open addressing on a 64-bit row hash, rows compared in full)."""
    cdef Py_ssize_t n = games.shape[0], width = games.shape[1]
    cdef Py_ssize_t cap = 16, i, j, slot, k
    while cap < 2 * n + 2:
        cap *= 2
    table_arr = np.full(cap, -1, dtype=np.int64)
    keep_arr = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] table = table_arr
    cdef int64_t[::1] keep = keep_arr
    cdef Py_ssize_t n_keep = 0
    cdef uint64_t h
    cdef bint same
    with nogil:
        for i in range(n):
            h = 1469598103934665603ULL
            for k in range(width):
                h = (h ^ <uint8_t>games[i, k]) * 1099511628211ULL
            h ^= h >> 29
            slot = <Py_ssize_t>(h & <uint64_t>(cap - 1))
            while True:
                j = table[slot]
                if j < 0:
                    table[slot] = i
                    keep[n_keep] = i
                    n_keep += 1
                    break
                same = True
                for k in range(width):
                    if games[i, k] != games[j, k]:
                        same = False
                        break
                if same:
                    break
                slot = (slot + 1) & (cap - 1)
    return keep_arr[:n_keep]


def encode_into(const int8_t[:, ::1] games, const int64_t[::1] language, const int64_t[:, ::1] slots,
                const int64_t[::1] lengths, int64_t[:, ::1] tokens, int64_t[:, ::1] move_index,
                uint8_t[:, ::1] move_end, int64_t pad_id, int64_t[::1] status):
    """Write games [n, 60] as tokens: the move at ply p of game i is the lengths[r] ids
    slots[r, :lengths[r]] with r = language[i] * 65 + square + 1. Fills tokens,
    move_index (ply of each token, -1 on padding) and move_end (1 on a move's last
    token) [n, T]; positions after the game get pad_id, -1 and 0.

    Validates as it goes: status[i] is 0, or -(ply + 1) at the first square that is
    not -1 and has no tokens (out of range, a centre square) or that follows a -1."""
    cdef Py_ssize_t i, n = games.shape[0], T = tokens.shape[1]
    cdef Py_ssize_t pos, j, count, row, k = slots.shape[1]
    cdef int ply, sq, rest
    cdef int64_t *tok
    cdef int64_t *idx
    cdef uint8_t *end
    with nogil:
        for i in range(n):
            pos = 0
            status[i] = 0
            tok = &tokens[i, 0]
            idx = &move_index[i, 0]
            end = &move_end[i, 0]
            for ply in range(60):
                sq = games[i, ply]
                if sq < 0:
                    if sq != -1:
                        status[i] = -(ply + 1)
                    for rest in range(ply + 1, 60):
                        if games[i, rest] != -1 and status[i] == 0:
                            status[i] = -(rest + 1)
                    break
                row = language[i] * 65 + sq + 1
                count = lengths[row] if sq < 64 else 0
                if count == 0 or pos + count > T:
                    status[i] = -(ply + 1)
                    break
                if pos + k <= T:
                    # all k slots, then advance by the move's length: the spare slots are
                    # overwritten by the next move or the padding (no branch per token)
                    for j in range(k):
                        tok[pos + j] = slots[row, j]
                        idx[pos + j] = ply
                        end[pos + j] = j == count - 1
                    pos += count
                else:
                    for j in range(count):
                        tok[pos] = slots[row, j]
                        idx[pos] = ply
                        end[pos] = j == count - 1
                        pos += 1
            for j in range(pos, T):
                tok[j] = pad_id
                idx[j] = -1
                end[j] = 0
