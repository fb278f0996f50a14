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

from .errors import ConfigError, LanguageError
from .othello import parse_moves

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
    records = {}
    for record in metrics:
        if any(k.startswith("legal_acc/") for k in record):
            records[record["step"]] = record   # a later record of a step replaces an earlier
    steps = sorted(records)
    languages = [k.split("/", 1)[1] for k in records[steps[0]] if k.startswith("legal_acc/")]
    return TransferResult(finetune_language, steps,
                          {lang: [float(records[s][f"legal_acc/{lang}"]) for s in steps]
                           for lang in languages})


def finetune_curves(checkpoint, config, *, finetune_language: str, finetune_games, val_games,
                    out_dir, progress: bool = True) -> TransferResult:
    """Fine-tune the model of `checkpoint` in `finetune_language` only, with `config`
    (a `TrainConfig`; its `language_weights` are replaced by a one-hot on that language),
    evaluating every language every `config.eval_every` steps on `val_games`.

    finetune_games, val_games: int8 [n, 60]. Resumable: a finished or interrupted run in
    `out_dir` is continued, not restarted.
    """
    from .checkpoint import load_checkpoint
    from .train import train

    language_set = load_checkpoint(checkpoint, verify=False).language_set
    if finetune_language not in language_set.names:
        raise LanguageError(f"finetune_language={finetune_language!r}: expected one of "
                            f"{list(language_set.names)}")
    weights = [float(name == finetune_language) for name in language_set.names]
    config = dataclasses.replace(config, language_weights=weights)
    result = train(config, train_games=finetune_games, val_games=val_games, out_dir=out_dir,
                   init_from=checkpoint, resume=True, progress=progress)
    if not result.metrics:
        raise ConfigError(f"fine-tuning in {str(out_dir)!r} recorded no evaluation; expected "
                          "eval_every > 0 or eval_games > 0")
    return _curves(result.metrics, finetune_language)


def run_transfer(config, *, finetune_language: str | None = None, pretrain_games,
                 finetune_games, val_games, out_dir, finetune_steps: int,
                 finetune_lr: float | None = None, n_evaluations: int = 10,
                 progress: bool = True) -> TransferResult:
    """The whole protocol: pretrain with `config` (a `TrainConfig`) on `pretrain_games`
    (int8 [n, 60], all opening with `TRANSFER_PREFIX` or another fixed prefix) in every
    language, then `finetune_curves` for `finetune_steps` steps in `finetune_language`
    (the first language by default) on `finetune_games`, measured `n_evaluations` times
    on `val_games` (full-distribution games, int8 [m, 60]).

    Writes ``out_dir/pretrain`` and ``out_dir/finetune-<language>`` (training runs,
    each resumable).
    """
    from .train import train

    pretrain_games = np.asarray(pretrain_games)
    prefix = pretrain_games[:, :len(TRANSFER_PREFIX)]
    if len(pretrain_games) and not (prefix == prefix[0]).all():
        raise ConfigError("pretrain_games do not share one opening prefix; expected games "
                          f"generated with a fixed prefix such as {parse_moves('c4 c3 c2')}")
    if isinstance(finetune_steps, bool) or not isinstance(finetune_steps, int) \
            or finetune_steps < 1:
        raise ConfigError(f"finetune_steps={finetune_steps!r}: expected a positive integer")
    out_dir = Path(out_dir)
    pretrained = train(config, train_games=pretrain_games, val_games=val_games,
                       out_dir=out_dir / "pretrain", resume=True, progress=progress)
    if finetune_language is None:
        finetune_language = pretrained.language_set.names[0]
    every = max(1, finetune_steps // max(1, n_evaluations))
    finetune = dataclasses.replace(
        config, max_steps=finetune_steps, warmup_steps=min(config.warmup_steps,
                                                           finetune_steps // 10),
        lr=config.lr if finetune_lr is None else finetune_lr, eval_every=every,
        checkpoint_every=every, keep_checkpoints=1)
    return finetune_curves(pretrained.checkpoint, finetune, finetune_language=finetune_language,
                           finetune_games=finetune_games, val_games=val_games,
                           out_dir=out_dir / f"finetune-{finetune_language}", progress=progress)
