"""Slow, move-by-move reference for the languages module: the id space of a set of
languages, encoding, decoding and training targets, written as plain Python loops
from the definitions in PROTOCOLS.md (mOthello)."""

CENTRE = (27, 28, 35, 36)
PLAYABLE = [s for s in range(64) if s not in CENTRE]
IGNORE = -100


def assign_ids(square_tokens, anchors=(), output_tokens=None):
    """Vocabulary ids from the languages' local tokens.

    square_tokens: one list per input language of 60 tuples of local tokens (PLAYABLE order);
    output_tokens: the same for an output-only language, or None.
    Returns (codes, vocab_size, owner): codes[j] maps square -> tuple of ids (the output
    language last), owner[id] is the language that brought the id (-1 for pad)."""
    anchors = set(anchors)
    next_id = 1
    owner = [-1]
    codes = []
    for j, language in enumerate(square_tokens):
        n_tokens = 1 + max(max(tokens) for tokens in language)
        ids = {}
        for token in range(n_tokens):
            users = [s for s, tokens in zip(PLAYABLE, language) if token in tokens]
            if j == 0 or any(s not in anchors for s in users):
                ids[token] = next_id
                owner.append(j)
                next_id += 1
        code = {}
        for s, tokens in zip(PLAYABLE, language):
            if j > 0 and s in anchors:
                code[s] = codes[0][s]
            else:
                code[s] = tuple(ids[t] for t in tokens)
        codes.append(code)
    if output_tokens is not None:
        n_tokens = 1 + max(max(tokens) for tokens in output_tokens)
        codes.append({s: (next_id + tokens[0],) for s, tokens in zip(PLAYABLE, output_tokens)})
        owner += [len(square_tokens)] * n_tokens
        next_id += n_tokens
    return codes, next_id, owner


def context_length(codes):
    """Tokens of a full 60-move game (every playable square once) in the longest language."""
    return max(sum(len(code[s]) for s in PLAYABLE) for code in codes)


def encode_game(game, code, T):
    """One game (list of squares, -1 padded) -> (tokens, move_index, move_end), each length T."""
    tokens, move_index, move_end = [], [], []
    for i, square in enumerate(game):
        if square < 0:
            break
        ids = code[square]
        for k, token in enumerate(ids):
            tokens.append(token)
            move_index.append(i)
            move_end.append(k == len(ids) - 1)
    pad = T - len(tokens)
    return tokens + [0] * pad, move_index + [-1] * pad, move_end + [False] * pad


def decode_row(tokens, code):
    """Greedy decoding of one row with a prefix-free code; None where it fails."""
    inverse = {ids: square for square, ids in code.items()}
    game, current = [], ()
    for token in tokens:
        if token == 0:
            break
        current += (token,)
        if current in inverse:
            game.append(inverse[current])
            current = ()
    if current:
        return None
    return game + [-1] * (60 - len(game))


def standard_targets(tokens):
    """Next token, -100 on pad and at the end."""
    out = []
    for t in range(len(tokens)):
        following = tokens[t + 1] if t + 1 < len(tokens) else 0
        out.append(following if following != 0 else IGNORE)
    return out


def unified_targets(game, code, output_code, T):
    """At the last sub-token of move i, the output id of move i+1; -100 elsewhere."""
    out = []
    for i, square in enumerate(game):
        if square < 0:
            break
        following = game[i + 1] if i + 1 < len(game) else -1
        for k in range(len(code[square])):
            last = k == len(code[square]) - 1
            out.append(output_code[following][0] if last and following >= 0 else IGNORE)
    return out + [IGNORE] * (T - len(out))
