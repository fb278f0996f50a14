"""One cell of the study: one training setting, one seed, the whole mOthello protocol.

``run_cell(setting="naive", seed=0, languages="atomic,atomic", scale="cpu", out_dir=DIR)``
runs, each step resumable (a finished step is read back, an interrupted training run
continues from its last checkpoint, every output is written atomically):

    DIR/cell.json          the parameters that define the results
    DIR/data/<role>/       game datasets: train, val, probe, test, pretrain, finetune
    DIR/data.json          the seed of every role, and the time taken
    DIR/model/             the training run; every checkpoint is kept (emergence reads them)
    DIR/model.json         legal-move accuracy and held-out loss per language, and the
                           training curves (loss; legal-move accuracy per language)
    DIR/probes.json        board probes at every layer, all language pairs, of the trained
                           model and of its random-init control (the same model at step 0),
                           the baselines (chance, majority per square, per square and move),
                           and the unification score at every layer
    DIR/emergence.json     cross-lingual probe accuracy and unification at each checkpoint
    DIR/results.json       the cell's results (written before transfer, again after it)
    DIR/transfer/          the transfer protocol's runs (pretraining, fine-tuning)
    DIR/transfer.json      transfer curves, gains, language confusion

A directory holds one cell: a rerun with other parameters (setting, seed, languages,
scale, probe) is refused, naming the fields that differ. Whether transfer runs is not
a parameter: a cell run without it gets it by running again with it.

Settings: ``naive`` (standard multilingual pretraining), ``anchors:K`` (K anchored
squares), ``unified`` (a shared output space). Scales (`SCALES`): ``tiny`` (a smoke test:
its models learn little), ``cpu`` (a grid of 12 cells in about an hour on 2 cores),
``small`` (a GPU), ``paper`` (mOthello's sizes). Every random stream comes from
``seeds.derive_seed(seed, role)``: cells of one seed share their games across settings,
so settings are compared on the same games.

Layers are counted as in Othello-GPT's probe tables (0 the embeddings, l the output of
block l). The study summarises at `PROTOCOL_LAYER` (6) when the model has it; smaller
models are summarised at the layer of `summary_layer_candidates` with the best
cross-lingual accuracy, and their emergence curves are measured at every candidate.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError, DatasetError, check_int
from .othello import parse_moves, square_name
from .seeds import MAX_SEED, derive_seed
from .storage import atomic_write_json
from .transfer import TRANSFER_PREFIX

__all__ = ["StudyScale", "SCALES", "PROTOCOL_LAYER", "parse_setting", "setting_label",
           "cell_name", "summary_layer_candidates", "resolve_scale", "resolve_probe",
           "probe_kind", "check_params", "run_cell", "CELL_FILES", "DATA_ROLES"]

PROTOCOL_LAYER = 6   # mOthello probes the residual stream after block 6


@dataclass(frozen=True)
class StudyScale:
    """Sizes of one study cell. Games are counts of fresh random games per role."""
    train_games: int
    val_games: int
    probe_games: int          # games the probes train on (mOthello: 1000, ~59k positions)
    test_games: int           # fresh games the probes are tested on (mOthello: 100)
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    batch_size: int
    max_steps: int            # multilingual training
    warmup_steps: int
    lr: float = 5e-4
    dropout: float = 0.1
    eval_games: int = 500     # held-out games of each legal-move evaluation
    eval_every: int = 1000    # 0: only at the end
    checkpoint_every: int = 1000   # checkpoints, each a point of the emergence curves
    probe_hidden: int = 512
    probe_lr: float = 1e-3
    probe_batch_size: int = 1024
    probe_epochs: int = 16
    # the transfer protocol
    pretrain_games: int = 100_000  # games opening c4 c3 c2
    pretrain_steps: int = 2000
    finetune_games: int = 100_000  # full-distribution games (mOthello: ~100k)
    finetune_steps: int = 1000
    finetune_lr: float = 1e-4
    n_evaluations: int = 10   # fine-tuning checkpoints measured after step 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int":
                least = 0 if field.name in ("eval_every", "warmup_steps") else 1
                check_int(f"StudyScale.{field.name}", value, least=least, error=ConfigError)
        if self.warmup_steps >= self.max_steps:
            raise ConfigError(f"StudyScale.warmup_steps={self.warmup_steps}: expected fewer "
                              f"than max_steps={self.max_steps}")


SCALES = {
    # a smoke test: runs in a minute or two on a CPU; its models learn little of the game
    "tiny": StudyScale(train_games=2000, val_games=200, probe_games=80, test_games=40,
                       n_layers=2, n_heads=2, d_model=64, d_mlp=256, batch_size=32,
                       max_steps=150, warmup_steps=15, lr=5e-3, eval_games=64, eval_every=50,
                       checkpoint_every=50, probe_hidden=128, probe_lr=3e-3,
                       probe_batch_size=256, probe_epochs=6, pretrain_games=2000,
                       pretrain_steps=150, finetune_games=1000, finetune_steps=45,
                       finetune_lr=1e-3, n_evaluations=3),
    # 2 cores, one torch thread per cell: 4 settings x 3 seeds in about an hour (RESULTS.md)
    "cpu": StudyScale(train_games=64_000, val_games=500, probe_games=500, test_games=100,
                      n_layers=2, n_heads=4, d_model=128, d_mlp=512, batch_size=32,
                      max_steps=2000, warmup_steps=100, lr=1e-3, dropout=0.0, eval_games=200,
                      eval_every=250, checkpoint_every=500, probe_hidden=256,
                      probe_batch_size=1024, probe_epochs=16, pretrain_games=32_000,
                      pretrain_steps=1000, finetune_games=10_000, finetune_steps=300,
                      finetune_lr=5e-4, n_evaluations=5),
    # one GPU: naive, anchors:8, unified x 3 seeds with transfer in about 10 minutes on an
    # H200, 3 cells at once (benchmarks/gpu_study.sh; the estimate is in BENCHMARKS.md)
    "small": StudyScale(train_games=1_536_000, val_games=2000, probe_games=1000, test_games=100,
                        n_layers=4, n_heads=4, d_model=256, d_mlp=1024, batch_size=512,
                        max_steps=3000, warmup_steps=150, lr=1e-3, dropout=0.0, eval_every=500,
                        checkpoint_every=1000, pretrain_games=768_000, pretrain_steps=1500,
                        finetune_games=100_000, finetune_steps=500, finetune_lr=3e-4,
                        n_evaluations=5),
    "paper": StudyScale(train_games=20_000_000, val_games=5000, probe_games=1000, test_games=100,
                        n_layers=8, n_heads=8, d_model=512, d_mlp=2048, batch_size=1024,
                        max_steps=20_000, warmup_steps=500, eval_every=1000,
                        checkpoint_every=2000, pretrain_games=5_000_000, pretrain_steps=20_000,
                        finetune_games=100_000, finetune_steps=2000),
}

_SETTING = re.compile(r"anchors:([1-9][0-9]*)")


def parse_setting(setting: str) -> tuple[int, str]:
    """``"naive"`` -> (0, "standard"); ``"anchors:K"`` -> (K, "standard");
    ``"unified"`` -> (0, "unified")."""
    if setting == "naive":
        return 0, "standard"
    if setting == "unified":
        return 0, "unified"
    match = _SETTING.fullmatch(setting) if isinstance(setting, str) else None
    if match and 0 < int(match.group(1)) <= 60:   # at most every playable square
        return int(match.group(1)), "standard"
    raise ConfigError(f"setting={setting!r}: expected 'naive', 'anchors:K' (K > 0) or 'unified'")


def setting_label(setting: str) -> str:
    """The setting as a file-name part: ``anchors:4`` -> ``anchors4``."""
    parse_setting(setting)
    return setting.replace(":", "")


def cell_name(setting: str, seed: int) -> str:
    """The directory name of a cell: ``naive-seed0``, ``anchors4-seed1``."""
    return f"{setting_label(setting)}-seed{seed}"


def summary_layer_candidates(n_layers: int) -> list[int]:
    """The layers a study may be summarised at: `PROTOCOL_LAYER` when the model has it,
    else every block's output 1..n_layers (never the embeddings)."""
    return [PROTOCOL_LAYER] if n_layers >= PROTOCOL_LAYER else list(range(1, n_layers + 1))


CELL = "cell.json"
DATA_ROLES = ("train", "val", "probe", "test", "pretrain", "finetune")
CELL_FILES = ("data.json", "model.json", "probes.json", "emergence.json", "results.json",
              "transfer.json")


def resolve_scale(scale: str | StudyScale) -> tuple[StudyScale, str]:
    """(sizes, name) of `scale`: a name of `SCALES`, or a `StudyScale` (named as the scale
    it equals, else "custom")."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ConfigError(f"scale={scale!r}: expected one of {sorted(SCALES)}")
        return SCALES[scale], scale
    if isinstance(scale, StudyScale):
        return scale, next((name for name, named in SCALES.items() if named == scale),
                           "custom")
    raise ConfigError(f"scale={scale!r}: expected one of {sorted(SCALES)} or a StudyScale")


def resolve_probe(probe, sizes: StudyScale):
    """The board probe estimator of a study: None or "mlp" (an `MLPProbe` of the scale's
    sizes), "linear" (a `LinearProbe`, the scale's optimiser settings), or an estimator
    (`MLPProbe`, `LinearProbe`) given as it is."""
    from .probes import LinearProbe, MLPProbe

    optimiser = {"lr": sizes.probe_lr, "batch_size": sizes.probe_batch_size,
                 "epochs": sizes.probe_epochs}
    if probe is None or probe == "mlp":
        return MLPProbe(hidden=sizes.probe_hidden, **optimiser)
    if probe == "linear":
        return LinearProbe(**optimiser)
    if not isinstance(probe, (MLPProbe, LinearProbe)):
        raise ConfigError(f"probe={probe!r}: expected 'mlp', 'linear' or a board probe "
                          "estimator (MLPProbe or LinearProbe)")
    return probe


def probe_kind(probe) -> str:
    """"mlp" or "linear": the kind of a board probe estimator."""
    return "mlp" if "hidden" in probe.get_params() else "linear"


def _rank() -> int:
    """This process's rank under torchrun (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def _games(path: Path, n_games: int, seed: int, prefix: str | None, threads: int | None,
           write: bool) -> np.ndarray:
    """Games of a role: a dataset generated once and reopened afterwards (its seed, count
    and prefix checked); without `write` (torchrun ranks but 0), generated in memory."""
    from .datasets import generate_dataset, load_games
    from .othello import generate_games

    opening = [] if prefix is None else parse_moves(prefix)
    if not write:
        return generate_games(n_games, seed=seed, threads=threads, prefix=opening or None)
    if not (path / "manifest.json").exists():
        generate_dataset(path, n_games=n_games, seed=seed, prefix=prefix, threads=threads,
                         progress=False)
    dataset = load_games(path)
    found = {"n_games": len(dataset), "seed": dataset.manifest.get("seed"),
             "prefix": list(dataset.manifest.get("prefix") or [])}
    wanted = {"n_games": n_games, "seed": seed, "prefix": opening}
    differ = [f"{k}={found[k]!r} (expected {wanted[k]!r})"
              for k in wanted if found[k] != wanted[k]]
    if differ:
        raise DatasetError(f"dataset {str(path)!r} holds other games: {', '.join(differ)}; "
                           "expected an empty directory or the same games")
    return np.asarray(dataset)


def _flat(d: dict) -> dict:
    """``{"sizes": {"n_layers": 2}}`` -> ``{"sizes.n_layers": 2}``."""
    fields = {}
    for key, value in d.items():
        if isinstance(value, dict):
            fields.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            fields[key] = value
    return fields


def check_params(path: Path, params: dict, what: str) -> None:
    """Record `params` in the JSON file `path`, or check them against the recorded ones
    (`ConfigError` naming every field that differs)."""
    if not path.exists():
        atomic_write_json(path, params)
        return
    recorded, now = _flat(json.loads(path.read_text())), _flat(json.loads(json.dumps(params)))
    differ = [f"{k}={recorded.get(k)!r} (now {now[k]!r})"
              for k in now if recorded.get(k) != now[k]]
    if differ:
        raise ConfigError(f"{str(path.parent)!r} holds a {what} with other parameters: "
                          f"{'; '.join(differ)}; expected the same parameters or a new directory")


def _step(path: Path, compute, progress: bool, name: str) -> dict:
    """A finished step's JSON output read back, or computed and written atomically (with
    the seconds it took)."""
    if path.exists():
        return json.loads(path.read_text())
    if progress:
        print(f"cell {path.parent.name}: {name} ...", flush=True)
    start = time.perf_counter()
    result = {**compute(), "seconds": time.perf_counter() - start}
    atomic_write_json(path, result)
    return result


def _curves(metrics: list[dict]) -> dict:
    """Training curves from a run's records: loss by step, and each evaluation's
    legal-move accuracy per language."""
    from .train import legal_move_curves

    losses = [(r["step"], r["loss"]) for r in metrics if "loss" in r]
    steps, accuracy = legal_move_curves(metrics)
    return {"loss": {"steps": [s for s, _ in losses], "values": [v for _, v in losses]},
            "legal_move_accuracy": {"steps": steps, **accuracy}}


def _per_game(per_position: np.ndarray, game: np.ndarray, n_games: int) -> np.ndarray:
    """per_position float [L, L, P] (fraction right at each test position), game int [P]
    -> float [L, L, n_games]: each game's squares read right, in positions."""
    L = per_position.shape[0]
    return np.stack([np.bincount(game, weights=per_position[a, b], minlength=n_games)
                     for a in range(L) for b in range(L)]).reshape(L, L, n_games)


def _analyse(model, language_set, probe_games, test_games, layers, probe, seed: int,
             progress: bool) -> tuple:
    """(results, probe-game activations, test-game activations): probes (all language
    pairs, trained on `probe_games`, tested on `test_games`) and the unification score
    (on the test games) at each of `layers`, from one collection of each games array."""
    from sklearn.base import clone

    from .activations import collect_parallel
    from .alignment import align
    from .unification import unification_score

    train = collect_parallel(model, language_set, probe_games, layers=layers, progress=False)
    test = collect_parallel(model, language_set, test_games, layers=layers, progress=False)
    by_layer = align(train, test, probe=clone(probe).set_params(seed=seed), seed=seed,
                     progress=progress)
    counts = np.bincount(test.game, minlength=len(test_games)).astype(float)
    unification = []
    for layer in by_layer.layers:
        if len(language_set.names) > 1:
            unification.append(unification_score(*test.stacked(layer)).to_dict())
        else:
            unification.append(None)
    return {"layers": list(by_layer.layers), "languages": list(test.languages),
            "in_distribution": by_layer.in_distribution.tolist(),
            "cross_lingual": [None if np.isnan(c) else float(c) for c in by_layer.cross_lingual],
            "matrices": [m.accuracy.tolist() for m in by_layer.matrices],
            "per_square": [m.per_square.tolist() for m in by_layer.matrices],
            "per_game": {"counts": counts.tolist(),
                         "hits": [_per_game(m.per_position, test.game, len(test_games)).tolist()
                                  for m in by_layer.matrices]},
            "unification": unification, "n_train": len(train), "n_test": len(test)}, train, test


def _seconds(*steps: dict) -> float:
    return float(sum(step.get("seconds", 0.0) for step in steps))


def run_cell(*, setting: str = "naive", seed: int = 0, languages: str = "atomic,atomic",
             scale: str | StudyScale = "tiny", out_dir, probe=None, device: str = "auto",
             threads: int | None = None, transfer: bool = True,
             progress: bool = True) -> dict | None:
    """Run (or resume) one cell and return the contents of ``out_dir/results.json``.

    probe: the board probe, an estimator (`probes.MLPProbe` or `probes.LinearProbe`;
    default an MLP probe with the scale's sizes) cloned for every fit, its seed set from
    the cell's; threads: torch threads for the whole cell (None: torch's default);
    transfer: run the transfer protocol after the alignment results are written. Under
    torchrun every process trains; rank 0 alone analyses, and the others return None.
    """
    from sklearn.base import clone

    from .checkpoint import list_checkpoints, load_model
    from .controls import baseline_accuracies, random_init_model
    from .devices import resolve_device
    from .languages import LanguageSet
    from .parallel import torch_threads
    from .probes import fresh_probe
    from .train import TrainConfig, process_group, train

    n_anchors, objective = parse_setting(setting)
    seed = check_int("seed", seed, least=0, most=MAX_SEED, error=ConfigError)
    device = resolve_device(device)
    if threads is not None:
        threads = check_int("threads", threads, least=1, error=ConfigError)
    language_set = LanguageSet.from_spec(languages, n_anchors=n_anchors,
                                         unified=objective == "unified")
    sizes, scale_name = resolve_scale(scale)
    probe = clone(resolve_probe(probe, sizes)).set_params(device=str(device), progress=False)
    kind = probe_kind(probe)
    fresh_probe(probe)   # checks the hyperparameters now
    seeds = {role: derive_seed(seed, f"{role}-games") for role in DATA_ROLES}
    seeds.update({role: derive_seed(seed, role) for role in ("training", "probes",
                                                             "transfer-training")})
    probe_params = {k: v for k, v in probe.get_params().items()
                    if k not in ("device", "progress", "seed")}
    params = {"format": "mothello-study-cell/1", "setting": setting, "seed": seed,
              "languages": languages, "scale": scale_name, "sizes": dataclasses.asdict(sizes),
              "probe": {"kind": kind, **probe_params}}
    out = Path(out_dir)
    main = _rank() == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        check_params(out / CELL, params, "study cell")
    if (out / "results.json").exists():   # finished: read back (rank 0), not rewritten
        finished = json.loads((out / "results.json").read_text())
        if finished["transfer_status"] == "done" or not transfer:
            return finished if main else None

    config = TrainConfig(languages=languages, n_anchors=n_anchors, objective=objective,
                         n_layers=sizes.n_layers, n_heads=sizes.n_heads, d_model=sizes.d_model,
                         d_mlp=sizes.d_mlp, dropout=sizes.dropout, batch_size=sizes.batch_size,
                         lr=sizes.lr, warmup_steps=sizes.warmup_steps, max_steps=sizes.max_steps,
                         eval_every=sizes.eval_every, eval_games=sizes.eval_games,
                         checkpoint_every=sizes.checkpoint_every, keep_checkpoints=None,
                         seed=seeds["training"], device=str(device),
                         log_every=max(1, min(100, sizes.max_steps // 20)))
    # under torchrun, one process group for every training run of the cell
    with process_group(str(device)), torch_threads(threads):
        start = time.perf_counter()
        prefix = ",".join(square_name(s) for s in TRANSFER_PREFIX)
        counts = {"train": sizes.train_games, "val": sizes.val_games,
                  "probe": sizes.probe_games, "test": sizes.test_games,
                  "pretrain": sizes.pretrain_games, "finetune": sizes.finetune_games}
        roles = DATA_ROLES if transfer else DATA_ROLES[:4]
        games = {role: _games(out / "data" / role, counts[role], seeds[role],
                              prefix if role == "pretrain" else None, threads, main)
                 for role in roles}
        if main and not (out / "data.json").exists():
            atomic_write_json(out / "data.json", {"seeds": seeds,
                                                  "seconds": time.perf_counter() - start})

        def training() -> dict:
            result = train(config, train_games=games["train"], val_games=games["val"],
                           out_dir=out / "model", resume=True, progress=progress)
            curves = _curves(result.metrics)
            final = [r for r in result.metrics if any(k.startswith("legal_acc/") for k in r)][-1]
            return {"step": final["step"],
                    "legal_move_accuracy": {k.split("/", 1)[1]: v for k, v in final.items()
                                            if k.startswith("legal_acc/")},
                    "val_loss": {k.split("/", 1)[1]: v for k, v in final.items()
                                 if k.startswith("val_loss/")},
                    "curves": curves}

        if not main:   # torchrun: train with the others, leave the analysis to rank 0
            # skip exactly what rank 0 skips (its finished steps), so every collective of
            # one training run meets the same run on every rank
            if not (out / "model.json").exists():
                train(config, train_games=games["train"], val_games=games["val"],
                      out_dir=out / "model", resume=True, progress=False)
            if transfer and not (out / "transfer.json").exists():
                _transfer(config, sizes, games, out, seeds, language_set, objective, device,
                          main=False, progress=False)
            return None
        trained = _step(out / "model.json", training, progress, "training")
        layers = list(range(sizes.n_layers + 1))
        probe_seed = seeds["probes"]
        candidates = summary_layer_candidates(sizes.n_layers)

        def probing() -> dict:
            model, _ = load_model(out / "model", device=device)
            result, train_acts, test_acts = _analyse(model, language_set, games["probe"],
                                                     games["test"], layers, probe, probe_seed,
                                                     progress)
            control_model = random_init_model(model.config, config.seed, device)
            control, _, _ = _analyse(control_model, language_set, games["probe"],
                                     games["test"], layers, probe, probe_seed, progress)
            baselines = baseline_accuracies(train_acts.board, train_acts.move, test_acts.board,
                                            test_acts.move)
            return {"trained": result, "control": control, "baselines": baselines}

        probes = _step(out / "probes.json", probing, progress, "probes and controls")

        def emergence() -> dict:
            rows = {"steps": [0], "layers": candidates,
                    "in_distribution": [], "cross_lingual": [], "unification": []}

            def add(analysis: dict) -> None:
                at = [analysis["layers"].index(layer) for layer in candidates]
                rows["in_distribution"].append([float(np.mean(analysis["in_distribution"][i]))
                                                for i in at])
                rows["cross_lingual"].append([analysis["cross_lingual"][i] for i in at])
                rows["unification"].append([(analysis["unification"][i] or {}).get("score")
                                            for i in at])

            add(probes["control"])   # step 0: the random-init control
            for path in list_checkpoints(out / "model" / "checkpoints"):
                step = int(path.name.split("-")[1])
                if step == trained["step"]:
                    continue
                model, _ = load_model(path, device=device)
                analysis, _, _ = _analyse(model, language_set, games["probe"], games["test"],
                                          candidates, probe, probe_seed, False)
                rows["steps"].append(step)
                add(analysis)
            rows["steps"].append(trained["step"])
            add(probes["trained"])
            return rows

        grown = _step(out / "emergence.json", emergence, progress, "emergence over training")
        results = {**params, "language_names": list(language_set.names),
                   "model": trained, "probes": probes["trained"], "control": probes["control"],
                   "baselines": probes["baselines"], "emergence": grown,
                   "summary_layer_candidates": candidates,
                   "transfer": None, "transfer_status": "pending" if transfer else "skipped",
                   "seconds": {"data": json.loads((out / "data.json").read_text())["seconds"],
                               "training": trained["seconds"], "probes": probes["seconds"],
                               "emergence": grown["seconds"]}}
        if (out / "transfer.json").exists():
            transfer = True   # finished before: report it whatever this run asked
        if not transfer:
            atomic_write_json(out / "results.json", results)
            return results
        if not (out / "transfer.json").exists():
            atomic_write_json(out / "results.json", results)   # alignment never waits
        transferred = _step(out / "transfer.json", lambda: _transfer(
            config, sizes, games, out, seeds, language_set, objective, device, main=True,
            progress=progress), progress, "transfer")
        results.update(transfer=transferred, transfer_status="done")
        results["seconds"]["transfer"] = transferred["seconds"]
        atomic_write_json(out / "results.json", results)
        return results


def _transfer(config, sizes: StudyScale, games: dict, out: Path, seeds: dict, language_set,
              objective: str, device, *, main: bool, progress: bool) -> dict:
    """The transfer protocol of a cell, and the language confusion at each fine-tuning
    checkpoint (standard objective only: a unified model answers in its output space)."""
    from .checkpoint import find_latest_checkpoint, load_model
    from .evaluate import language_confusion
    from .transfer import run_transfer

    pretrain = dataclasses.replace(
        config, max_steps=sizes.pretrain_steps, eval_every=0, checkpoint_every=0,
        warmup_steps=min(config.warmup_steps, sizes.pretrain_steps // 10),
        seed=seeds["transfer-training"], keep_checkpoints=1)
    result = run_transfer(pretrain, pretrain_games=games["pretrain"],
                          prefix=TRANSFER_PREFIX, finetune_games=games["finetune"],
                          val_games=games["val"], out_dir=out / "transfer",
                          finetune_steps=sizes.finetune_steps, finetune_lr=sizes.finetune_lr,
                          n_evaluations=sizes.n_evaluations, keep_checkpoints=None,
                          progress=progress)
    if not main:
        return {}
    summary = result.to_dict()
    tuned = result.finetune_language
    others = [name for name in result.languages if name != tuned]
    summary["gain_others"] = (float(np.mean([result.gain[n] for n in others]))
                              if others else None)
    summary["confusion"] = None
    if objective == "standard" and others:
        runs = {0: find_latest_checkpoint(out / "transfer" / "pretrain" / "checkpoints")}
        for step in result.steps[1:]:
            runs[step] = out / "transfer" / f"finetune-{tuned}" / "checkpoints" / \
                f"step-{step:06d}"
        eval_games = games["val"][:config.eval_games]
        confusion = {name: [] for name in others}
        for step in result.steps:
            model, _ = load_model(runs[step], device=device)
            for name in others:
                confusion[name].append(language_confusion(model, language_set, eval_games,
                                                          language=name, into=tuned))
        summary["confusion"] = confusion
    return summary
