"""A slow, independent Othello engine: an 8x8 list of lists and direction walking.

The test oracle for the compiled engine. It shares no code with mothello_fast
and follows the rules literally: a move must be on an empty square and close at
least one straight line of opponent discs; every such line flips; when the side
to move has no move the other side plays (an implicit pass); the game ends when
neither side can move. Black (1) moves first; white is 2; squares are
row * 8 + column with row a..h.
"""
import random

EMPTY, BLACK, WHITE = 0, 1, 2
DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


class OracleGame:
    def __init__(self):
        self.grid = [[EMPTY] * 8 for _ in range(8)]
        self.grid[3][3] = self.grid[4][4] = WHITE  # d4, e5
        self.grid[3][4] = self.grid[4][3] = BLACK  # d5, e4
        self.to_move = BLACK

    def flips(self, square, player):
        """Squares flipped if `player` plays `square` ([] if illegal)."""
        r, c = divmod(square, 8)
        if self.grid[r][c] != EMPTY:
            return []
        opponent = 3 - player
        result = []
        for dr, dc in DIRECTIONS:
            line = []
            rr, cc = r + dr, c + dc
            while 0 <= rr < 8 and 0 <= cc < 8 and self.grid[rr][cc] == opponent:
                line.append(rr * 8 + cc)
                rr, cc = rr + dr, cc + dc
            if line and 0 <= rr < 8 and 0 <= cc < 8 and self.grid[rr][cc] == player:
                result.extend(line)
        return result

    def legal(self, player=None):
        player = self.to_move if player is None else player
        return [s for s in range(64) if self.flips(s, player)]

    def play(self, square):
        """Play for the side to move; returns the flipped squares. Raises on an illegal move."""
        flipped = self.flips(square, self.to_move)
        if not flipped:
            raise ValueError(f"illegal move {square}")
        for s in flipped + [square]:
            self.grid[s // 8][s % 8] = self.to_move
        opponent = 3 - self.to_move
        if self.legal(opponent):
            self.to_move = opponent
        # else: the opponent passes and the same side moves again (or the game is over)
        return flipped

    def over(self):
        return not self.legal(BLACK) and not self.legal(WHITE)

    def board(self):
        return [self.grid[s // 8][s % 8] for s in range(64)]


def random_game(rng: random.Random):
    """A list of squares, each uniform among the legal moves."""
    game, moves = OracleGame(), []
    while not game.over():
        move = rng.choice(game.legal())
        game.play(move)
        moves.append(move)
    return moves


def oracle_labels(moves):
    """Per-ply labels of one game: lists of (board[64], player, legal_next[64 bools], flipped set)."""
    game, out = OracleGame(), []
    for move in moves:
        player = game.to_move
        flipped = set(game.play(move))
        nxt = set(game.legal()) if not game.over() else set()
        out.append((game.board(), player, [s in nxt for s in range(64)],
                    [s in flipped for s in range(64)]))
    return out


def oracle_perft(depth, game=None, passed=False):
    """Leaves at `depth`: a pass is a ply, a finished game one leaf."""
    game = game or OracleGame()
    if depth == 0:
        return 1
    moves = game.legal()
    if not moves:
        if passed or not game.legal(3 - game.to_move):
            return 1
        game.to_move = 3 - game.to_move
        n = oracle_perft(depth - 1, game, True)
        game.to_move = 3 - game.to_move
        return n
    total = 0
    for move in moves:
        saved = ([row[:] for row in game.grid], game.to_move)
        game.play(move)
        # `play` applied the implicit pass already; perft counts a pass as a ply,
        # so undo it here and let the recursion take the pass as its own ply.
        mover = saved[1]
        if game.to_move == mover and not game.over():
            game.to_move = 3 - mover
        elif game.over():
            game.to_move = 3 - mover
        total += oracle_perft(depth - 1, game)
        game.grid, game.to_move = saved
    return total
