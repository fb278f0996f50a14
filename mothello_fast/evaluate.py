"""Legal-move accuracy: does the model's greedy next move obey the rules?

At the last sub-token of each move of a game (except the game's last move) the
model's top-1 prediction is decoded into a move and counted correct when that move
is legal in the position (the engine's `Replay.legal_next`):

- standard objective: the prediction is the next move's first token in the game's
  language; for multi-token (split, compositional) languages the predicted tokens
  are fed back greedily until they spell a move of that language (or stop being
  the start of one, which counts as wrong);
- unified objective: the prediction is the next move in the output language.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from .errors import ConfigError, LanguageError, check_int
from .devices import resolve_device
from .model import unwrap
from .othello import replay, validate_games

__all__ = ["legal_move_accuracy", "evaluate_languages", "evaluate_checkpoint"]


class _Codes:
    """A language's codes (square -> token tuple) as sorted integer keys, so that
    token tuples of a whole batch are looked up at once."""

    def __init__(self, token_ids: np.ndarray, vocab_size: int):
        token_ids = np.asarray(token_ids, dtype=np.int64)        # [64, K], -1 padded
        self.max_len = token_ids.shape[1]
        self.base = vocab_size + 1
        full, prefix = {}, set()
        for square, code in enumerate(token_ids):
            code = code[code >= 0]
            if len(code) == 0:
                continue
            full.setdefault(self._key(code), square)
            for j in range(1, len(code)):
                prefix.add(self._key(code[:j]))
        self.full_keys = np.array(sorted(full), dtype=np.int64)
        self.full_square = np.array([full[k] for k in sorted(full)], dtype=np.int64)
        self.prefix_keys = np.array(sorted(prefix), dtype=np.int64)

    def _key(self, tokens) -> int:
        key = 0
        for t in tokens:
            key = key * self.base + int(t) + 1
        return key

    def extend(self, keys: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        return keys * self.base + tokens + 1

    @staticmethod
    def _find(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(table) == 0:
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        at = np.searchsorted(table, keys).clip(max=len(table) - 1)
        return at, table[at] == keys

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keys: int64 [m] -> (square int64 [m], -1 where not a whole code;
        is_prefix bool [m], True where the tokens so far start a longer code)."""
        at, whole = self._find(self.full_keys, keys)
        square = np.where(whole, self.full_square[at] if len(self.full_square) else -1, -1)
        _, is_prefix = self._find(self.prefix_keys, keys)
        return square, is_prefix & ~whole


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device, bf16: bool | None):
    """bf16 autocast where `bf16` (None: on CUDA, as training runs by default)."""
    if (device.type == "cuda") if bf16 is None else bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _predict(model, tokens: torch.Tensor, rows: np.ndarray, positions: np.ndarray,
             batch_size: int) -> np.ndarray:
    """Top-1 token at `positions` of `rows` of tokens int64 [n, T]: -> int64 [m]."""
    out = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        r = torch.as_tensor(rows[start:start + batch_size], device=tokens.device)
        p = torch.as_tensor(positions[start:start + batch_size], device=tokens.device)
        length = int(p.max()) + 1
        logits, _ = model(tokens[r, :length])
        out[start:start + batch_size] = logits[torch.arange(len(r), device=r.device), p] \
            .argmax(-1).cpu().numpy()
    return out


def _count_batch(model, language_set, games: np.ndarray, language, objective: str,
                 codes: _Codes, batch_size: int) -> tuple[int, int, float, int]:
    """(correct, predictions, summed target loss, targets) for one batch of games."""
    device = _device_of(model)
    encoded = language_set.encode(games, language)
    T = min(encoded.tokens.shape[1], model.config.context_length)  # e.g. Othello-GPT reads 59
    tokens = torch.as_tensor(np.asarray(encoded.tokens)[:, :T], dtype=torch.long, device=device)
    targets = torch.as_tensor(np.asarray(language_set.make_targets(encoded, objective))[:, :T],
                              dtype=torch.long, device=device)
    move_index = np.asarray(encoded.move_index)[:, :T]
    move_end = np.asarray(encoded.move_end)[:, :T]
    labels = replay(games)
    logits, _ = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                             ignore_index=-100, reduction="sum")
    n_targets = int((targets != -100).sum())

    # positions that end a move which is followed by another move
    last = labels.n_moves[:, None] - 1
    game, pos = np.nonzero(move_end & (move_index >= 0) & (move_index < last))
    move = move_index[game, pos]
    pred = logits[torch.as_tensor(game, device=device), torch.as_tensor(pos, device=device)] \
        .argmax(-1).cpu().numpy()
    keys = codes.extend(np.zeros(len(pred), dtype=np.int64), pred)
    square, pending = codes.lookup(keys)
    if objective == "standard":  # feed the predicted sub-tokens back until they spell a move
        context = tokens.shape[1]
        for j in range(1, codes.max_len):
            pending &= pos + j < context
            idx = np.nonzero(pending)[0]
            if len(idx) == 0:
                break
            # one row per pending prediction: the game's tokens up to pos, then the
            # tokens predicted so far (later positions are never read: attention is causal)
            rows = tokens[torch.as_tensor(game[idx], device=device)].clone()
            width = min(context, int(pos[idx].max()) + j + 1)
            rows = rows[:, :width]
            r = torch.arange(len(idx), device=device)
            generated = keys[idx]
            for i in range(j, 0, -1):  # unpack the generated tokens from the key
                rows[r, torch.as_tensor(pos[idx] + i, device=device)] = torch.as_tensor(
                    generated % codes.base - 1, device=device)
                generated = generated // codes.base
            nxt = _predict(model, rows, np.arange(len(idx)), pos[idx] + j, 8 * batch_size)
            keys[idx] = codes.extend(keys[idx], nxt)
            square[idx], pending[idx] = codes.lookup(keys[idx])
        square[pending] = -1
    legal = square >= 0
    legal[legal] = labels.legal_next[game[legal], move[legal], square[legal]]
    return int(legal.sum()), len(legal), float(loss), n_targets


def _check_objective(language_set, objective: str | None) -> str:
    """`objective`, checked; None: "unified" for a language set with an output language
    (what such a set is built for), else "standard"."""
    if objective is None:
        return "unified" if language_set.output_language is not None else "standard"
    if objective not in ("standard", "unified"):
        raise LanguageError(f"objective={objective!r}: expected 'standard' or 'unified'")
    if objective == "unified" and language_set.output_language is None:
        raise LanguageError("objective='unified' needs a language set with an output language "
                            "(built with unified=True)")
    return objective


def _codes_for(language_set, language, objective: str) -> _Codes:
    code_language = language_set.output_language if objective == "unified" else language
    return _Codes(language_set.token_ids(code_language), language_set.vocab_size)


def _evaluate(model, language_set, games, language, objective: str, batch_size: int,
              bf16: bool | None) -> tuple[int, int, float, int]:
    batch_size = check_int("batch_size", batch_size, least=1, error=ConfigError)
    objective = _check_objective(language_set, objective)
    games = validate_games(games)
    codes = _codes_for(language_set, language, objective)
    gpt = unwrap(model)
    was_training = gpt.training
    gpt.eval()
    totals = np.zeros(4)
    try:
        with torch.no_grad(), _autocast(_device_of(gpt), bf16):
            for start in range(0, len(games), batch_size):
                chunk = np.asarray(games[start:start + batch_size])
                totals += _count_batch(gpt, language_set, chunk, language, objective, codes,
                                       batch_size)
    finally:
        gpt.train(was_training)
    return int(totals[0]), int(totals[1]), float(totals[2]), int(totals[3])


def legal_move_accuracy(model, language_set, games, *, language, objective: str | None = None,
                        batch_size: int = 256, bf16: bool | None = None) -> float:
    """Fraction of greedy top-1 next moves that are legal, over every move of `games`
    (int8 [n, 60]) but each game's last, with the games written in `language`.

    objective: "standard" or "unified" (None: unified for a language set with an output
    language, else standard); batch_size: games per forward pass; bf16: run under bf16
    autocast (None: on CUDA)."""
    correct, total, _, _ = _evaluate(model, language_set, games, language, objective, batch_size,
                                     bf16)
    return correct / total if total else float("nan")


def evaluate_languages(model, language_set, games, *, objective: str | None = None,
                       languages=None, batch_size: int = 256,
                       bf16: bool | None = None) -> dict[str, float]:
    """``{"legal_acc/<lang>": ..., "val_loss/<lang>": ...}`` for every input language
    (all but the output language) or the given `languages`, on games int8 [n, 60];
    `objective`, `batch_size` and `bf16` as in `legal_move_accuracy`."""
    batch_size = check_int("batch_size", batch_size, least=1, error=ConfigError)
    objective = _check_objective(language_set, objective)
    languages = language_set.select_languages(languages)   # input languages, each once
    result = {}
    for language in languages:
        correct, total, loss, n_targets = _evaluate(model, language_set, games, language,
                                                    objective, batch_size, bf16)
        result[f"legal_acc/{language}"] = correct / total if total else float("nan")
        result[f"val_loss/{language}"] = loss / n_targets if n_targets else float("nan")
    return result


def evaluate_checkpoint(checkpoint, games, *, objective: str | None = None, languages=None,
                        device: str = "auto", batch_size: int = 256,
                        bf16: bool | None = None) -> dict[str, float]:
    """Load `checkpoint` and run `evaluate_languages` on games int8 [n, 60]; the objective
    defaults to the one the checkpoint was trained with."""
    from .checkpoint import load_checkpoint

    batch_size = check_int("batch_size", batch_size, least=1, error=ConfigError)
    device = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    model, language_set = ckpt.build_model(device=device), ckpt.language_set
    if objective is None:   # the checkpoint's, else what its language set is built for
        objective = (ckpt.train_config or {}).get("objective")
    return evaluate_languages(model, language_set, games, objective=objective,
                              languages=languages, batch_size=batch_size, bf16=bf16)
