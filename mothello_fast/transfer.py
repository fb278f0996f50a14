"""Cross-lingual transfer (mOthello's protocol): does fine-tuning in one language help
the others?

1. Pretrain in every language, only on games that open with a fixed prefix
   (c4 c3 c2 by default), so the model has never seen most of the game tree.
2. Fine-tune in ONE language on games from the full distribution.
3. Record every language's greedy legal-move accuracy on full-distribution games at
   each fine-tuning checkpoint (step 0 is the pretrained model).

Transfer shows as the languages that were not fine-tuned improving too; the summary
number of a language is its gain: final accuracy minus the pretrained model's.

Unlike mOthello's public code, the fine-tuning warm-up is capped at a tenth of the
fine-tuning steps (theirs was longer than the fine-tuning itself).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, LanguageError, check_float, check_int
from .othello import parse_moves, square_name, validate_games

__all__ = ["TRANSFER_PREFIX", "TransferResult", "finetune_curves", "run_transfer"]

TRANSFER_PREFIX = (19, 18, 17)   # c4 c3 c2


@dataclass(frozen=True)
class TransferResult:
    """steps: fine-tuning steps of the measurements (0: the pretrained model);
    accuracy: language -> legal-move accuracy at each step."""
    finetune_language: str
    steps: list[int]
    accuracy: dict[str, list[float]]

    @property
    def languages(self) -> list[str]:
        return list(self.accuracy)

    @property
    def gain(self) -> dict[str, float]:
        """Per language: accuracy after fine-tuning minus the pretrained model's."""
        return {k: v[-1] - v[0] for k, v in self.accuracy.items()}

    def to_dict(self) -> dict:
        return {"finetune_language": self.finetune_language, "steps": list(self.steps),
                "accuracy": {k: list(v) for k, v in self.accuracy.items()}, "gain": self.gain}

    @classmethod
    def from_dict(cls, data: dict) -> TransferResult:
        return cls(data["finetune_language"], list(data["steps"]),
                   {k: list(v) for k, v in data["accuracy"].items()})


def _curves(metrics: list[dict], finetune_language: str) -> TransferResult:
    """Legal-move accuracy per language from a run's evaluation records."""
    from .train import legal_move_curves

    steps, accuracy = legal_move_curves(metrics)
    return TransferResult(finetune_language, steps, accuracy)


def finetune_curves(checkpoint, config, *, finetune_language: str, finetune_games, val_games,
                    out_dir, progress: bool = True) -> TransferResult | None:
    """Fine-tune the model of `checkpoint` in `finetune_language` only, with `config`
    (a `TrainConfig`; its `language_weights` are replaced by a one-hot on that language),
    evaluating every language every `config.eval_every` steps (at least 1) on `val_games`,
    from step 0 (the pretrained model) on.

    finetune_games, val_games: int8 [n, 60], non-empty. Resumable: a finished or
    interrupted run in `out_dir` is continued, not restarted. Under torchrun, the
    processes other than rank 0 (which log nothing) return None.
    """
    from .activations import check_games
    from .checkpoint import load_checkpoint
    from .train import train

    language_set = load_checkpoint(checkpoint, verify=False).language_set
    if finetune_language not in language_set.names:
        raise LanguageError(f"finetune_language={finetune_language!r}: expected one of "
                            f"{list(language_set.names)}")
    if not config.eval_every:   # train would then measure only the end: no step 0, no gain
        raise ConfigError(f"config.eval_every={config.eval_every!r}: expected a positive "
                          "integer, so that the pretrained model (step 0) is measured")
    val_games = check_games(val_games, "val_games", error=ConfigError)
    weights = [float(name == finetune_language) for name in language_set.names]
    config = dataclasses.replace(config, language_weights=weights)
    result = train(config, train_games=finetune_games, val_games=val_games, out_dir=out_dir,
                   init_from=checkpoint, resume=True, progress=progress)
    if result.rank != 0:
        return None
    evaluated = [r["step"] for r in result.metrics if any(k.startswith("legal_acc/") for k in r)]
    if 0 not in evaluated:   # a run begun without evaluations, resumed with them
        raise ConfigError(f"fine-tuning in {str(out_dir)!r} recorded no evaluation at step 0 "
                          "(the pretrained model); expected a run begun with eval_every > 0")
    return _curves(result.metrics, finetune_language)


def _common_prefix(games: np.ndarray) -> list[int]:
    """The longest opening (squares) that every row of `games` (int8 [n, 60]) starts with."""
    same = (games == games[0]).all(0) & (games[0] >= 0)
    length = int(np.argmin(same)) if not same.all() else games.shape[1]
    return games[0, :length].astype(int).tolist()


def _check_pretrain_games(pretrain_games, prefix) -> np.ndarray:
    """pretrain_games validated: non-empty, all opening with `prefix` (squares or names),
    or with None, all sharing an opening of at least one move."""
    games = validate_games(pretrain_games)
    if len(games) == 0:
        raise ConfigError("pretrain_games is empty: expected games opening with a fixed prefix")
    common = _common_prefix(games)
    if prefix is None:
        if not common:
            raise ConfigError("pretrain_games do not share an opening move; expected games "
                              f"generated with a fixed prefix such as "
                              f"{' '.join(square_name(s) for s in TRANSFER_PREFIX)}")
        return games
    wanted = parse_moves(prefix)
    if not wanted or common[:len(wanted)] != wanted:
        raise ConfigError(f"prefix={prefix!r}: expected a non-empty opening that every "
                          "pretraining game starts with; their common opening is "
                          f"{' '.join(square_name(s) for s in common) or '(none)'}")
    return games


def run_transfer(config, *, finetune_language: str | None = None, pretrain_games,
                 finetune_games, val_games, out_dir, finetune_steps: int,
                 finetune_lr: float | None = None, n_evaluations: int = 10,
                 prefix=None, keep_checkpoints: int | None = 1,
                 progress: bool = True) -> TransferResult | None:
    """The whole protocol: pretrain with `config` (a `TrainConfig`) on `pretrain_games`
    (int8 [n, 60]) in every language, then `finetune_curves` for `finetune_steps` steps in
    `finetune_language` (the first language by default) on `finetune_games`, measured
    `n_evaluations` times on `val_games` (full-distribution games, int8 [m, 60]).

    Every pretraining game must open with `prefix` (squares or names, e.g.
    `TRANSFER_PREFIX` or ``"f5 d6"``); with ``prefix=None`` they must share an opening
    of at least one move. Every input is checked before any training. Writes
    ``out_dir/pretrain`` and ``out_dir/finetune-<language>`` (training runs, each
    resumable), keeping the newest `keep_checkpoints` fine-tuning checkpoints (None:
    the one of every measurement). Under torchrun, ranks other than 0 return None.
    """
    from .activations import check_games
    from .languages import LanguageSet
    from .train import process_group, train

    pretrain_games = _check_pretrain_games(pretrain_games, prefix)
    finetune_games = check_games(finetune_games, "finetune_games", error=ConfigError)
    val_games = check_games(val_games, "val_games", error=ConfigError)
    for name, value in (("finetune_steps", finetune_steps), ("n_evaluations", n_evaluations)):
        check_int(name, value, least=1, error=ConfigError)
    if finetune_lr is not None:
        finetune_lr = check_float("finetune_lr", finetune_lr, low=0, low_open=True,
                                  error=ConfigError)
    names = LanguageSet.from_spec(config.languages, n_anchors=config.n_anchors,
                                  unified=config.objective == "unified",
                                  seed=config.language_seed).names
    if finetune_language is None:
        finetune_language = names[0]
    if finetune_language not in names:
        raise LanguageError(f"finetune_language={finetune_language!r}: expected one of "
                            f"{list(names)}")
    out_dir = Path(out_dir)
    every = -(-finetune_steps // n_evaluations)   # ceil: at most n_evaluations after step 0
    finetune = dataclasses.replace(
        config, max_steps=finetune_steps, warmup_steps=min(config.warmup_steps,
                                                           finetune_steps // 10),
        lr=config.lr if finetune_lr is None else finetune_lr, eval_every=every,
        checkpoint_every=every, keep_checkpoints=keep_checkpoints)
    with process_group(str(config.device)):   # one group for both runs under torchrun
        pretrained = train(config, train_games=pretrain_games, val_games=val_games,
                           out_dir=out_dir / "pretrain", resume=True, progress=progress)
        return finetune_curves(pretrained.checkpoint, finetune,
                               finetune_language=finetune_language,
                               finetune_games=finetune_games, val_games=val_games,
                               out_dir=out_dir / f"finetune-{finetune_language}",
                               progress=progress)
