"""The mOthello study in one call: data, training, probes, alignment, transfer, report.

``run_study(setting="naive", languages="atomic,atomic", scale="tiny", out_dir=DIR)``
runs, each step resumable (a finished step is skipped, an interrupted training run
continues from its last checkpoint, every output is written atomically):

    DIR/study.json                                  the parameters that define the results
    DIR/data/{train,val,probe,align,pretrain,finetune}/   game datasets (see `datasets`)
    DIR/model/                                      multilingual training run
    DIR/probes.json                                 alignment matrix at every layer
    DIR/transfer/                                   pretraining on c4 c3 c2 and fine-tuning
    DIR/transfer.json                               transfer curves and gains
    DIR/results.json, DIR/report.md, DIR/*.png      the summary

A directory holds one study: re-running with other parameters (setting, languages,
scale, seed, probe) is refused, naming the fields that differ. Probes are trained
on the probe games and tested on `align_games` fresh games (mOthello: 100).

Settings: ``naive`` (standard multilingual pretraining), ``anchors:K`` (K anchored
squares), ``unified`` (a shared output space). Scales: ``tiny`` runs on a laptop CPU
in about a minute, ``small`` in tens of minutes on a GPU, ``paper`` uses mOthello's
sizes (20M games, 8 layers, d_model 512, batch 1024).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import generate_dataset, load_games
from .storage import atomic_write_json
from .errors import ConfigError, DatasetError, check_int
from .othello import parse_moves, square_name

__all__ = ["SCALES", "StudyScale", "parse_setting", "run_study"]


@dataclass(frozen=True)
class StudyScale:
    """Sizes of one study. Games are counts of fresh random games per role."""
    train_games: int
    val_games: int
    probe_games: int          # fresh games for the probes (mOthello: 1000, ~59k positions)
    pretrain_games: int       # games opening c4 c3 c2 for the transfer pretraining
    finetune_games: int       # full-distribution games for fine-tuning (mOthello: ~100k)
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    batch_size: int
    max_steps: int            # multilingual training and transfer pretraining
    warmup_steps: int
    finetune_steps: int
    lr: float = 5e-4
    finetune_lr: float = 1e-4
    eval_games: int = 500
    eval_every: int = 1000
    probe_hidden: int = 512
    probe_lr: float = 1e-3
    probe_batch_size: int = 1024
    probe_epochs: int = 16
    n_evaluations: int = 10   # fine-tuning checkpoints measured
    align_games: int = 100    # fresh games the probes are tested on (mOthello: 100)
    checkpoint_every: int | None = None   # training checkpoints (None: every eval_every)


SCALES = {
    "tiny": StudyScale(train_games=2000, val_games=200, probe_games=80, pretrain_games=2000,
                       finetune_games=1000, n_layers=2, n_heads=2, d_model=64, d_mlp=256,
                       batch_size=32, max_steps=150, warmup_steps=15, finetune_steps=45,
                       lr=5e-3, finetune_lr=1e-3, eval_games=64, eval_every=0,
                       probe_hidden=128, probe_lr=3e-3, probe_batch_size=256, probe_epochs=6,
                       n_evaluations=3, checkpoint_every=50),
    "small": StudyScale(train_games=1_000_000, val_games=2000, probe_games=1000,
                        pretrain_games=500_000, finetune_games=100_000, n_layers=4, n_heads=4,
                        d_model=256, d_mlp=1024, batch_size=512, max_steps=4000,
                        warmup_steps=200, finetune_steps=1000, lr=1e-3, finetune_lr=2e-4),
    "paper": StudyScale(train_games=20_000_000, val_games=5000, probe_games=1000,
                        pretrain_games=5_000_000, finetune_games=100_000, n_layers=8, n_heads=8,
                        d_model=512, d_mlp=2048, batch_size=1024, max_steps=20_000,
                        warmup_steps=500, finetune_steps=2000),
}


def parse_setting(setting: str) -> tuple[int, str]:
    """``"naive"`` -> (0, "standard"); ``"anchors:K"`` -> (K, "standard");
    ``"unified"`` -> (0, "unified")."""
    if setting == "naive":
        return 0, "standard"
    if setting == "unified":
        return 0, "unified"
    kind, _, count = setting.partition(":")
    if kind == "anchors" and count.isdigit() and int(count) > 0:
        return int(count), "standard"
    raise ConfigError(f"setting={setting!r}: expected 'naive', 'anchors:K' (K > 0) or 'unified'")


STUDY = "study.json"
_LAST_SEED_OFFSET = 5_000_005   # the largest offset added to the seed for a role's games
_STEPS = ("model.json", "probes.json", "transfer.json")


def _games(path: Path, n_games: int, seed: int, prefix: str | None, progress: bool) -> np.ndarray:
    """A dataset generated once and reopened afterwards; reopening checks that it holds
    `n_games` games of `seed` and `prefix`."""
    if not (path / "manifest.json").exists():
        generate_dataset(path, n_games=n_games, seed=seed, prefix=prefix, progress=progress)
    dataset = load_games(path)
    opening = [] if prefix is None else parse_moves(prefix)
    found = {"n_games": len(dataset), "seed": dataset.manifest.get("seed"),
             "prefix": list(dataset.manifest.get("prefix") or [])}
    wanted = {"n_games": n_games, "seed": seed, "prefix": opening}
    differ = [f"{k}={found[k]!r} (expected {wanted[k]!r})"
              for k in wanted if found[k] != wanted[k]]
    if differ:
        raise DatasetError(f"dataset {str(path)!r} holds other games: {', '.join(differ)}; "
                           "expected an empty directory or the same games")
    return np.asarray(dataset)


def _check_study(out: Path, params: dict) -> None:
    """Record `params` in ``out/study.json``, or check them against the recorded ones."""
    path = out / STUDY
    if not path.exists():
        if any((out / step).exists() for step in _STEPS):
            raise ConfigError(f"{str(out)!r} holds results of a study without {STUDY}: "
                              "expected an empty directory or a study of this version")
        atomic_write_json(path, params)
        return

    def flat(d: dict) -> dict:   # {"sizes": {"n_layers": 2}} -> {"sizes.n_layers": 2}
        fields = {}
        for key, value in d.items():
            if isinstance(value, dict):
                fields.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                fields[key] = value
        return fields

    recorded, now = flat(json.loads(path.read_text())), flat(params)
    differ = [f"{k}={recorded.get(k)!r} (now {now[k]!r})"
              for k in now if recorded.get(k) != now[k]]
    if differ:
        raise ConfigError(f"{str(out)!r} holds a study with other parameters: "
                          f"{'; '.join(differ)}; expected the same parameters or a new out_dir")


def _step(path: Path, compute, progress: bool, name: str) -> dict:
    """Load a finished step's JSON output, or compute it and write it atomically."""
    if path.exists():
        return json.loads(path.read_text())
    if progress:
        print(f"study: {name} ...", flush=True)
    start = time.perf_counter()
    result = {**compute(), "seconds": time.perf_counter() - start}
    atomic_write_json(path, result)
    return result


def run_study(*, setting: str = "naive", languages: str = "atomic,atomic",
              scale: str | StudyScale = "tiny", out_dir, seed: int = 0,
              probe: str = "mlp", device: str = "auto", progress: bool = True) -> dict:
    """Run (or resume) the study and return the contents of ``out_dir/results.json``."""
    from .alignment import model_alignment
    from .checkpoint import load_model
    from .devices import resolve_device
    from .languages import LanguageSet
    from .probes import make_probe
    from .train import TrainConfig, train
    from .transfer import TRANSFER_PREFIX, run_transfer

    n_anchors, objective = parse_setting(setting)
    # the games of each role are drawn with seed + an offset (below), each a 64-bit seed
    seed = check_int("seed", seed, least=0, most=2**64 - 1 - _LAST_SEED_OFFSET, error=ConfigError)
    resolve_device(device)
    LanguageSet.from_spec(languages, n_anchors=n_anchors, unified=objective == "unified")
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ConfigError(f"scale={scale!r}: expected one of {sorted(SCALES)}")
        sizes = SCALES[scale]
    else:
        sizes, scale = scale, "custom"
    probe_params = {"lr": sizes.probe_lr, "batch_size": sizes.probe_batch_size,
                    "epochs": sizes.probe_epochs, "device": device,
                    **({"hidden": sizes.probe_hidden} if probe == "mlp" else {})}
    make_probe(probe, **probe_params)
    checkpoint_every = sizes.eval_every if sizes.checkpoint_every is None \
        else sizes.checkpoint_every
    config = TrainConfig(languages=languages, n_anchors=n_anchors, objective=objective,
                         n_layers=sizes.n_layers, n_heads=sizes.n_heads, d_model=sizes.d_model,
                         d_mlp=sizes.d_mlp, batch_size=sizes.batch_size, lr=sizes.lr,
                         warmup_steps=sizes.warmup_steps, max_steps=sizes.max_steps,
                         eval_every=sizes.eval_every, eval_games=sizes.eval_games,
                         checkpoint_every=checkpoint_every, keep_checkpoints=2, seed=seed,
                         device=device, log_every=max(1, min(100, sizes.max_steps // 10)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_study(out, {"setting": setting, "languages": languages, "scale": scale,
                       "sizes": dataclasses.asdict(sizes), "seed": seed, "probe": probe})
    data = out / "data"
    # distinct seeds per role, so that no two roles share games
    train_games = _games(data / "train", sizes.train_games, seed, None, progress)
    val_games = _games(data / "val", sizes.val_games, seed + 1_000_001, None, progress)
    probe_games = _games(data / "probe", sizes.probe_games, seed + 2_000_002, None, progress)
    align_games = _games(data / "align", sizes.align_games, seed + 5_000_005, None, progress)
    prefix = ",".join(square_name(s) for s in TRANSFER_PREFIX)
    pretrain_games = _games(data / "pretrain", sizes.pretrain_games, seed + 3_000_003, prefix,
                            progress)
    finetune_games = _games(data / "finetune", sizes.finetune_games, seed + 4_000_004, None,
                            progress)

    def training() -> dict:
        result = train(config, train_games=train_games, val_games=val_games,
                       out_dir=out / "model", resume=True, progress=progress)
        final = [r for r in result.metrics if any(k.startswith("legal_acc/") for k in r)][-1]
        return {"checkpoint": str(Path(result.checkpoint).relative_to(out)),
                "step": final["step"],
                "legal_move_accuracy": {k.split("/", 1)[1]: v for k, v in final.items()
                                        if k.startswith("legal_acc/")},
                "val_loss": {k.split("/", 1)[1]: v for k, v in final.items()
                             if k.startswith("val_loss/")}}

    trained = _step(out / "model.json", training, progress, "training")

    def probing() -> dict:
        model, language_set = load_model(out / trained["checkpoint"],
                                         device=resolve_device(device))
        layers = list(range(sizes.n_layers + 1))
        result = model_alignment(model, language_set, probe_games, test_games=align_games,
                                 layers=layers, probe=probe, probe_params=probe_params,
                                 seed=seed, progress=progress)
        return {"probe": probe, "labels": "absolute", **result.to_dict()}

    probes = _step(out / "probes.json", probing, progress, "probes and alignment")

    def transferring() -> dict:
        pretrain = dataclasses.replace(config, eval_every=0)
        result = run_transfer(pretrain, pretrain_games=pretrain_games, prefix=TRANSFER_PREFIX,
                              finetune_games=finetune_games, val_games=val_games,
                              out_dir=out / "transfer", finetune_steps=sizes.finetune_steps,
                              finetune_lr=sizes.finetune_lr, n_evaluations=sizes.n_evaluations,
                              progress=progress)
        return result.to_dict()

    transfer = _step(out / "transfer.json", transferring, progress, "transfer")

    results = _summary(setting, languages, scale, seed, sizes, trained, probes, transfer)
    atomic_write_json(out / "results.json", results)
    from .report import write_study_report
    write_study_report(results, out)
    return results


def _summary(setting, languages, scale, seed, sizes, trained, probes, transfer) -> dict:
    """results.json: what a reader needs, with the layer of the default probe picked out."""
    layers = probes["layers"]
    layer = min(6, layers[-1])   # mOthello probes after block 6; smaller models: the last
    matrix = probes["matrices"][layers.index(layer)]
    return {
        "setting": setting, "languages": languages, "language_names": matrix["languages"],
        "scale": scale, "seed": seed, "sizes": dataclasses.asdict(sizes),
        "model": {k: trained[k] for k in ("step", "legal_move_accuracy", "val_loss")},
        "probe": {"kind": probes["probe"], "labels": probes["labels"], "layers": layers,
                  "in_distribution": probes["in_distribution"],
                  "cross_lingual": probes["cross_lingual"]},
        "alignment": {"layer": layer, "languages": matrix["languages"],
                      "matrix": matrix["accuracy"],
                      "in_distribution": float(np.mean(matrix["in_distribution"])),
                      "cross_lingual": matrix["cross_lingual"]},
        "transfer": transfer,
        "seconds": {"training": trained["seconds"], "probes": probes["seconds"],
                    "transfer": transfer["seconds"]},
    }
