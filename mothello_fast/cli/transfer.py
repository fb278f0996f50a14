r"""Cross-lingual transfer: pretrain in every language on games opening c4 c3 c2,
fine-tune in one language on the full distribution, and measure every language's
legal-move accuracy across the fine-tuning checkpoints.

Example:
    mothello transfer --config train.yaml --pretrain-games 2000000 --finetune-games 100000 \
        --finetune-steps 2000 --language L0 --out runs/transfer
"""
from __future__ import annotations

import argparse
import json

from .defaults import api_defaults
from .games import non_negative_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory of the two training runs")
    parser.add_argument("--config", default=None, help="TrainConfig (YAML/JSON) of pretraining")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable)")
    parser.add_argument("--pretrain-games", type=int, required=True,
                        help="games opening c4 c3 c2 to pretrain on, in every language")
    parser.add_argument("--finetune-games", type=int, required=True,
                        help="full-distribution games to fine-tune on, in one language")
    parser.add_argument("--val-games", type=int, default=1000,
                        help="held-out games every language is measured on")
    parser.add_argument("--finetune-steps", type=int, required=True,
                        help="fine-tuning steps")
    parser.add_argument("--finetune-lr", type=float, default=None,
                        help="fine-tuning learning rate (default: the config's lr)")
    parser.add_argument("--evaluations", type=int, default=api_defaults(
        "mothello_fast.transfer", "run_transfer")["n_evaluations"],
                        help="fine-tuning checkpoints measured")
    parser.add_argument("--language", default=None, help="fine-tuning language (default: first)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of the pretraining games; the fine-tuning and held-out "
                             "games use seeds derived from it (mothello_fast.seeds) "
                             "(default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..storage import atomic_write_json
    from ..othello import generate_games
    from ..seeds import derive_seed
    from ..train import load_train_config
    from ..transfer import TRANSFER_PREFIX, run_transfer

    config = load_train_config(args.config, args.set)
    pretrain = generate_games(args.pretrain_games, seed=args.seed, prefix=list(TRANSFER_PREFIX))
    finetune = generate_games(args.finetune_games, seed=derive_seed(args.seed, "finetune-games"))
    val = generate_games(args.val_games, seed=derive_seed(args.seed, "val-games"))
    result = run_transfer(config, finetune_language=args.language, pretrain_games=pretrain,
                          finetune_games=finetune, val_games=val, out_dir=args.out,
                          finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr,
                          n_evaluations=args.evaluations, prefix=TRANSFER_PREFIX,
                          progress=not args.quiet)
    atomic_write_json(f"{args.out}/transfer.json", result.to_dict())
    print(json.dumps(result.gain))
    return 0
