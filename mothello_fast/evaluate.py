"""Legal-move accuracy: does the model's greedy next move obey the rules?

At the last sub-token of each move of a game (except the game's last move) the
model's top-1 prediction is decoded into a move and counted correct when that move
is legal in the position (the engine's `Replay.legal_next`):

- standard objective: the prediction is the next move's first token in the game's
  language; for multi-token (split, compositional) languages the predicted tokens
  are fed back greedily until they spell a move of that language (or stop being
  the start of one, which counts as wrong), read against the code table `decode` reads
  (`encoding.MoveCodes`). Each continuation reuses the keys and
  values of its game's prefix (`GPT.prefill`, `GPT.extend`), so a sub-token costs one
  token of compute, not a forward pass over the prefix;
- unified objective: the prediction is the next move in the output language.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from .devices import resolve_device
from .encoding import MoveCodes
from .errors import ConfigError, LanguageError, check_int
from .model import unwrap
from .othello import replay, validate_games
from .progress import progress_bar

__all__ = ["legal_move_accuracy", "evaluate_languages", "evaluate_checkpoint",
           "language_confusion"]


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _autocast(device: torch.device, bf16: bool | None):
    """bf16 autocast where `bf16` (None: on CUDA, as training runs by default)."""
    if (device.type == "cuda") if bf16 is None else bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _followed_move_ends(encoded, width: int, n_moves: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(game, position, ply) int arrays: within the first `width` tokens of `encoded`, the
    last sub-token of every move that another move follows (n_moves: int [n], each game's
    number of moves), where the model's next-token prediction is a next move."""
    move_index = np.asarray(encoded.move_index)[:, :width]
    move_end = np.asarray(encoded.move_end)[:, :width]
    game, pos = np.nonzero(move_end & (move_index >= 0) & (move_index < n_moves[:, None] - 1))
    return game, pos, move_index[game, pos]


@contextmanager
def _inference(gpt, bf16: bool | None):
    """`gpt` in eval mode, without gradients, under bf16 autocast where asked (see
    `_autocast`); its training mode is restored afterwards."""
    was_training = gpt.training
    gpt.eval()
    try:
        with torch.no_grad(), _autocast(_device_of(gpt), bf16):
            yield
    finally:
        gpt.train(was_training)


def _count_batch(model, language_set, games: np.ndarray, language, objective: str,
                 codes: MoveCodes, batch_size: int) -> tuple[int, int, float, int]:
    """(correct, predictions, summed target loss, targets) for one batch of games."""
    device = _device_of(model)
    encoded = language_set.encode(games, language)
    T = min(encoded.tokens.shape[1], model.config.context_length)  # e.g. Othello-GPT reads 59
    tokens = torch.as_tensor(np.asarray(encoded.tokens)[:, :T], dtype=torch.long, device=device)
    targets = torch.as_tensor(np.asarray(language_set.make_targets(encoded, objective))[:, :T],
                              dtype=torch.long, device=device)
    labels = replay(games)
    game, pos, move = _followed_move_ends(encoded, T, labels.n_moves)
    multi_token = objective == "standard" and codes.max_len > 1
    if multi_token:   # keep every layer's keys and values: continuations reuse them
        logits, cache_keys, cache_values = model.prefill(tokens)
    else:
        logits, _ = model(tokens)
    loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                             ignore_index=-100, reduction="sum")
    n_targets = int((targets != -100).sum())
    pred = logits[torch.as_tensor(game, device=device), torch.as_tensor(pos, device=device)] \
        .argmax(-1).cpu().numpy()
    keys = codes.extend(codes.empty(len(pred)), pred, 0)
    square, pending = codes.lookup(keys)
    if multi_token:
        _spell_out(model, cache_keys, cache_values, keys, square, pending, game, pos, codes)
    legal = square >= 0
    legal[legal] = labels.legal_next[game[legal], move[legal], square[legal]]
    return int(legal.sum()), len(legal), float(loss), n_targets


def _spell_out(model, cache_keys, cache_values, keys: np.ndarray, square: np.ndarray,
               pending: np.ndarray, game: np.ndarray, pos: np.ndarray, codes: MoveCodes
               ) -> None:
    """Feed the predictions still `pending` (the start of a longer code) their own predicted
    sub-tokens back, greedily, until they spell a move of the language (or stop being the
    start of one, or reach the context's end: wrong), updating `keys`, `square` and
    `pending` in place. Each continuation reads its game's prefix up to its position from
    the prefill's keys and values (`GPT.extend`): one token of compute a sub-token.

    keys, square: int64 [m]; pending: bool [m]; game, pos: int64 [m], the row and position
    of each prediction in the prefilled tokens."""
    device = cache_keys[0].device
    T = cache_keys[0].shape[2]
    alive, generated = np.nonzero(pending)[0], None
    for j in range(1, codes.max_len):
        pending[alive] &= pos[alive] + j < T
        keep = pending[alive]
        if not keep.any():
            break
        if generated is not None and not keep.all():
            kept = torch.as_tensor(keep, device=device)
            generated = tuple([g[kept] for g in part] for part in generated)
        alive = alive[keep]
        last_token = torch.as_tensor(codes.last_token(keys[alive], j - 1), device=device)[:, None]
        at = torch.as_tensor(pos[alive], device=device)
        logits, generated = model.extend(
            last_token, at[:, None] + j, cache_keys, cache_values,
            rows=torch.as_tensor(game[alive], device=device),
            valid=torch.arange(T, device=device)[None] <= at[:, None], generated=generated)
        keys[alive] = codes.extend(keys[alive], logits[:, 0].argmax(-1).cpu().numpy(), j)
        square[alive], pending[alive] = codes.lookup(keys[alive])
    square[pending] = -1


def _check_objective(language_set, objective: str | None) -> str:
    """`objective`, checked; None: "unified" for a language set with an output language
    (what such a set is built for), else "standard"."""
    from .languages import check_language_set

    check_language_set(language_set)
    if objective is None:
        return "unified" if language_set.output_language is not None else "standard"
    if objective not in ("standard", "unified"):
        raise LanguageError(f"objective={objective!r}: expected 'standard' or 'unified'")
    if objective == "unified" and language_set.output_language is None:
        raise LanguageError("objective='unified' needs a language set with an output language "
                            "(built with unified=True)")
    return objective


def _codes_for(language_set, language, objective: str) -> MoveCodes:
    return language_set.move_codes(language_set.output_language if objective == "unified"
                                   else language)


def _evaluate(model, language_set, games, language, objective: str, batch_size: int,
              bf16: bool | None, progress: bool = False) -> tuple[int, int, float, int]:
    batch_size = check_int("batch_size", batch_size, least=1, error=ConfigError)
    objective = _check_objective(language_set, objective)
    games = validate_games(games)
    codes = _codes_for(language_set, language, objective)
    gpt = unwrap(model)
    language_set.check_model(gpt)
    totals = np.zeros(4)
    with _inference(gpt, bf16):
        for start in progress_bar(progress, range(0, len(games), batch_size),
                                  desc=f"evaluating {language}", unit="batch", leave=False):
            chunk = np.asarray(games[start:start + batch_size])
            totals += _count_batch(gpt, language_set, chunk, language, objective, codes,
                                   batch_size)
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
                       languages=None, batch_size: int = 256, bf16: bool | None = None,
                       progress: bool = False) -> dict[str, float]:
    """``{"legal_acc/<lang>": ..., "val_loss/<lang>": ...}`` for every input language
    (all but the output language) or the given `languages`, on games int8 [n, 60];
    `objective`, `batch_size` and `bf16` as in `legal_move_accuracy`; `progress`: a
    progress bar over each language's batches."""
    batch_size = check_int("batch_size", batch_size, least=1, error=ConfigError)
    objective = _check_objective(language_set, objective)
    languages = language_set.select_languages(languages)   # input languages, each once
    result = {}
    for language in languages:
        correct, total, loss, n_targets = _evaluate(model, language_set, games, language,
                                                    objective, batch_size, bf16, progress)
        result[f"legal_acc/{language}"] = correct / total if total else float("nan")
        result[f"val_loss/{language}"] = loss / n_targets if n_targets else float("nan")
    return result


def evaluate_checkpoint(checkpoint, games, *, objective: str | None = None, languages=None,
                        device: str = "auto", batch_size: int = 256,
                        bf16: bool | None = None, progress: bool = False) -> dict[str, float]:
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
                              languages=languages, batch_size=batch_size, bf16=bf16,
                              progress=progress)


def language_confusion(model, language_set, games, *, language, into, batch_size: int = 256,
                       bf16: bool | None = None) -> float:
    """How often the model answers in language `into` when the game is written in
    `language` (standard objective): the fraction of greedy top-1 next tokens, at the
    last sub-token of every move of `games` (int8 [n, 60]) but each game's last, that
    are tokens of `into` and not of `language` (anchor tokens, shared by both, do not
    count). After fine-tuning in one language only, a high rate in the others means
    the model writes the fine-tuned language's moves whatever it reads: the negative
    transfer of naive and anchored pretraining."""
    batch_size = check_int("batch_size", batch_size, least=1, error=ConfigError)
    from .languages import check_language_set

    source, target = check_language_set(language_set).select_languages([language, into],
                                                                       least=1)
    games = validate_games(games)
    vocab = language_set.vocab_size
    foreign = np.zeros(vocab, dtype=bool)
    ids = language_set.token_ids(target)
    foreign[ids[ids >= 0]] = True
    own = language_set.token_ids(source)
    foreign[own[own >= 0]] = False
    gpt = unwrap(model)
    language_set.check_model(gpt)   # the logits index the set's vocabulary
    device = _device_of(gpt)
    foreign_t = torch.as_tensor(foreign, device=device)
    hits = total = 0
    with _inference(gpt, bf16):
        for start in range(0, len(games), batch_size):
            chunk = np.asarray(games[start:start + batch_size])
            encoded = language_set.encode(chunk, source)
            T = min(encoded.tokens.shape[1], gpt.config.context_length)
            game, pos, _ = _followed_move_ends(encoded, T, replay(chunk).n_moves)
            logits, _ = gpt(torch.as_tensor(np.asarray(encoded.tokens)[:, :T],
                                            dtype=torch.long, device=device))
            pred = logits[torch.as_tensor(game, device=device),
                          torch.as_tensor(pos, device=device)].argmax(-1)
            hits += int(foreign_t[pred].sum())
            total += len(game)
    return hits / total if total else float("nan")
