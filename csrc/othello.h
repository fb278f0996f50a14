/* Bitboard Othello core.
 *
 * A position is two 64-bit bitboards: `me` (the side to move) and `opp`.
 * Bit i is square i, row-major from a1 (0) to h8 (63); a square's name is
 * the row letter a..h followed by the column digit 1..8 (d5 = 8*3+4 = 28).
 *
 * Everything here is `static inline` and free of Python: the Cython module
 * (_engine.pyx) calls these functions in loops that run without the GIL.
 */
#ifndef MOTHELLO_OTHELLO_H
#define MOTHELLO_OTHELLO_H

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MOTHELLO_X86_BMI2 1 /* a pdep path, chosen at run time (select_path) */
#endif

typedef uint64_t bb_t;

#define GAME_PLIES 60

/* Start: d4 (27), e5 (36) white; d5 (28), e4 (35) black; black moves first. */
#define START_BLACK ((1ULL << 28) | (1ULL << 35))
#define START_WHITE ((1ULL << 27) | (1ULL << 36))

static inline int bb_popcount(bb_t x) { return __builtin_popcountll(x); }
static inline int bb_lowest(bb_t x) { return __builtin_ctzll(x); }

/* Squares off the board's left and right edges: a line of discs flipped
 * horizontally or diagonally never contains them, so masking the opponent's
 * discs with INNER_COLS stops every shift from wrapping across a row end. */
#define INNER_COLS 0x7E7E7E7E7E7E7E7EULL

/* Moves of `me` along one axis (both ways), shift-pair (Kogge-Stone) fill.
 * `mask` is the opponent's discs that may lie inside a flipped line. */
static inline bb_t moves_along(bb_t me, bb_t mask, int dir) {
    const int dir2 = dir + dir;
    bb_t fl = mask & (me << dir), fr = mask & (me >> dir);
    fl |= mask & (fl << dir);
    fr |= mask & (fr >> dir);
    bb_t ml = mask & (mask << dir), mr = mask & (mask >> dir);
    fl |= ml & (fl << dir2);
    fr |= mr & (fr >> dir2);
    fl |= ml & (fl << dir2);
    fr |= mr & (fr >> dir2);
    return (fl << dir) | (fr >> dir);
}

/* Legal moves of the side owning `me`: empty squares that close a line of
 * at least one `opp` disc against a `me` disc. */
static inline bb_t legal_moves(bb_t me, bb_t opp) {
    const bb_t inner = opp & INNER_COLS;
    return (moves_along(me, inner, 1) | moves_along(me, opp, 8) |
            moves_along(me, inner, 7) | moves_along(me, inner, 9)) & ~(me | opp);
}

/* Flips along one ray from `move`: fill through `mask` discs (at most 6),
 * keep the line only if a `me` disc closes it. Branch-free. */
#define RAY_LEFT(dir)                                                       \
    do {                                                                    \
        bb_t f = mask_##dir & (move << dir);                                \
        f |= mask_##dir & (f << dir); f |= mask_##dir & (f << dir);         \
        f |= mask_##dir & (f << dir); f |= mask_##dir & (f << dir);         \
        f |= mask_##dir & (f << dir);                                       \
        flipped |= f & (bb_t)(-(int64_t)(((f << dir) & me) != 0));          \
    } while (0)
#define RAY_RIGHT(dir)                                                      \
    do {                                                                    \
        bb_t f = mask_##dir & (move >> dir);                                \
        f |= mask_##dir & (f >> dir); f |= mask_##dir & (f >> dir);         \
        f |= mask_##dir & (f >> dir); f |= mask_##dir & (f >> dir);         \
        f |= mask_##dir & (f >> dir);                                       \
        flipped |= f & (bb_t)(-(int64_t)(((f >> dir) & me) != 0));          \
    } while (0)

/* Discs of `opp` flipped when `me` plays `sq` (0 if the move flips nothing,
 * which for an empty square means the move is illegal). */
static inline bb_t flips_for(bb_t me, bb_t opp, int sq) {
    const bb_t move = 1ULL << sq, inner = opp & INNER_COLS;
    const bb_t mask_1 = inner, mask_7 = inner, mask_9 = inner, mask_8 = opp;
    bb_t flipped = 0;
    RAY_LEFT(1); RAY_RIGHT(1);
    RAY_LEFT(8); RAY_RIGHT(8);
    RAY_LEFT(7); RAY_RIGHT(7);
    RAY_LEFT(9); RAY_RIGHT(9);
    return flipped;
}

/* n-th (0-based) set bit of x, lowest first. */
static inline int nth_set_bit(bb_t x, int n) {
    while (n--) x &= x - 1;
    return bb_lowest(x);
}

#ifdef MOTHELLO_X86_BMI2
/* The same with one instruction: pdep deposits bit n onto the n-th set bit. */
__attribute__((target("bmi2"))) static inline int nth_set_bit_pdep(bb_t x, int n) {
    return bb_lowest(_pdep_u64(1ULL << n, x));
}
#endif

/* ---- Random numbers: one independent stream per game -------------------
 * splitmix64 turns (seed, game index) into the state of a xoshiro256**
 * generator, so game i is the same whatever the thread that plays it. */
static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s[4]; } rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed, uint64_t stream) {
    uint64_t sm = seed ^ (0xD1B54A32D192ED03ULL * (stream + 1));
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&sm);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t; s[3] = rotl64(s[3], 45);
    return result;
}

/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire 2019). */
static inline uint32_t rng_below(rng_t *r, uint32_t n) {
    uint64_t m = (uint64_t)(uint32_t)(rng_next(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rng_next(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* ---- Games ----------------------------------------------------------------
 * A game is GAME_PLIES int8 squares, -1 after its end. Passes are implicit:
 * when the side to move has no legal move, the other side plays. */

/* Play one random game after the forced opening `prefix` (n_prefix squares,
 * already checked legal by the caller). Writes all 60 entries of `out`.
 * Returns the number of moves played. */
static inline __attribute__((always_inline)) int
play_random_game_impl(rng_t *r, const int8_t *prefix, int n_prefix, int8_t *out, int use_pdep) {
    bb_t me = START_BLACK, opp = START_WHITE;
    int ply = 0;
    for (; ply < n_prefix; ply++) {
        bb_t legal = legal_moves(me, opp);
        if (!legal) { bb_t t = me; me = opp; opp = t; legal = legal_moves(me, opp); }
        int sq = prefix[ply];
        bb_t f = flips_for(me, opp, sq);
        me |= f | (1ULL << sq); opp &= ~f;
        out[ply] = (int8_t)sq;
        { bb_t t = me; me = opp; opp = t; }
    }
    for (; ply < GAME_PLIES; ply++) {
        bb_t legal = legal_moves(me, opp);
        if (!legal) {
            bb_t t = me; me = opp; opp = t;
            legal = legal_moves(me, opp);
            if (!legal) break;
        }
        int pick = (int)rng_below(r, (uint32_t)bb_popcount(legal));
#ifdef MOTHELLO_X86_BMI2
        int sq = use_pdep ? nth_set_bit_pdep(legal, pick) : nth_set_bit(legal, pick);
#else
        int sq = nth_set_bit(legal, pick);
        (void)use_pdep;
#endif
        bb_t f = flips_for(me, opp, sq);
        me |= f | (1ULL << sq); opp &= ~f;
        out[ply] = (int8_t)sq;
        { bb_t t = me; me = opp; opp = t; }
    }
    int n_moves = ply;
    for (; ply < GAME_PLIES; ply++) out[ply] = -1;
    return n_moves;
}

/* Fill out[n][GAME_PLIES] with random games; row i is game first_game + i,
 * drawn from its own stream (seed, first_game + i). The loop is compiled twice,
 * once for CPUs with a fast pdep; both give the same games. */
static void generate_batch_portable(int8_t *out, int64_t n, uint64_t seed, int64_t first_game,
                                    const int8_t *prefix, int n_prefix) {
    rng_t r;
    for (int64_t i = 0; i < n; i++) {
        rng_seed(&r, seed, (uint64_t)(first_game + i));
        play_random_game_impl(&r, prefix, n_prefix, out + i * GAME_PLIES, 0);
    }
}

#ifdef MOTHELLO_X86_BMI2
__attribute__((target("bmi2")))
static void generate_batch_pdep(int8_t *out, int64_t n, uint64_t seed, int64_t first_game,
                                const int8_t *prefix, int n_prefix) {
    rng_t r;
    for (int64_t i = 0; i < n; i++) {
        rng_seed(&r, seed, (uint64_t)(first_game + i));
        play_random_game_impl(&r, prefix, n_prefix, out + i * GAME_PLIES, 1);
    }
}
#endif

/* 1 where this CPU has a fast pdep (BMI2, but not AMD Zen 1/2, where it is
 * microcoded and slower than the loop). */
static inline int fast_pdep_available(void) {
#ifdef MOTHELLO_X86_BMI2
    __builtin_cpu_init();
    return __builtin_cpu_supports("bmi2") && !__builtin_cpu_is("znver1") && !__builtin_cpu_is("znver2");
#else
    return 0;
#endif
}

static inline void generate_batch(int8_t *out, int64_t n, uint64_t seed, int64_t first_game,
                                  const int8_t *prefix, int n_prefix, int use_pdep) {
#ifdef MOTHELLO_X86_BMI2
    if (use_pdep) { generate_batch_pdep(out, n, seed, first_game, prefix, n_prefix); return; }
#endif
    generate_batch_portable(out, n, seed, first_game, prefix, n_prefix);
}

/* Per-ply labels of one replayed game, as bitboards (the Cython layer
 * expands them). Each array has GAME_PLIES entries; entries after the end
 * of the game are zero (player 0).
 *   black, white: discs after the move
 *   player:       1 black or 2 white, who played the move
 *   legal_next:   legal moves of the side to move after it (0 at game end)
 *   flipped:      discs flipped by the move
 * Returns the number of moves, or -(ply + 1) for the first illegal move
 * (an out-of-range square, an occupied square, one that flips nothing, a
 * move after the game is over, or a move after a -1). */
static inline int replay_game(const int8_t *game, bb_t *black, bb_t *white, uint8_t *player,
                              bb_t *legal_next, bb_t *flipped) {
    bb_t me = START_BLACK, opp = START_WHITE;
    int side = 1; /* 1 black, 2 white: owner of `me` */
    int ply = 0;
    bb_t legal = legal_moves(me, opp);
    for (; ply < GAME_PLIES; ply++) {
        int sq = game[ply];
        if (sq < 0) break;
        if (!legal) return -(ply + 1); /* game already over */
        if (sq > 63 || !((legal >> sq) & 1)) return -(ply + 1);
        bb_t f = flips_for(me, opp, sq);
        me |= f | (1ULL << sq); opp &= ~f;
        player[ply] = (uint8_t)side;
        flipped[ply] = f;
        black[ply] = side == 1 ? me : opp;
        white[ply] = side == 1 ? opp : me;
        { bb_t t = me; me = opp; opp = t; side = 3 - side; }
        legal = legal_moves(me, opp);
        if (!legal) {
            bb_t other = legal_moves(opp, me);
            if (other) { bb_t t = me; me = opp; opp = t; side = 3 - side; legal = other; }
        }
        legal_next[ply] = legal;
    }
    int n_moves = ply;
    for (; ply < GAME_PLIES; ply++) {
        if (game[ply] != -1) return -(ply + 1); /* a move after the -1 padding */
        black[ply] = white[ply] = legal_next[ply] = flipped[ply] = 0;
        player[ply] = 0;
    }
    return n_moves;
}

/* perft: leaves of the game tree at `depth` plies, a pass counted as a ply
 * and a finished game counted as one leaf. Bulk-counts the last ply. */
static uint64_t perft_rec(bb_t me, bb_t opp, int depth, int passed) {
    bb_t legal = legal_moves(me, opp);
    if (!legal) {
        if (passed) return 1; /* neither side can move: game over, one leaf */
        return depth == 1 ? 1 : perft_rec(opp, me, depth - 1, 1);
    }
    if (depth == 1) return (uint64_t)bb_popcount(legal);
    uint64_t total = 0;
    while (legal) {
        int sq = bb_lowest(legal);
        legal &= legal - 1;
        bb_t f = flips_for(me, opp, sq);
        total += perft_rec(opp & ~f, me | f | (1ULL << sq), depth - 1, 0);
    }
    return total;
}

#endif
