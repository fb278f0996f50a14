"""Hand-made study cells: `results.json` contents with chosen accuracies, so that the
summary, the verdicts and the report can be checked on numbers whose answer is known."""
from __future__ import annotations

import numpy as np

LAYERS = [0, 1, 2]
LANGUAGES = ["L0", "L1"]
N_GAMES = 20
POSITIONS = 59


def cell(setting: str, seed: int, *, in_dist: float, cross: float, legal: float = 0.95,
         control: float = 0.55, gain_tuned: float = 0.2, gain_other: float | None = 0.0,
         noise: float = 0.005, unification: float = 0.5) -> dict:
    """A cell whose probes read `in_dist` on their own language and `cross` on the other
    at every layer but the embeddings (where both are `control`), plus seeded noise of
    size `noise`; its random-init control reads `control` everywhere; legal-move accuracy
    `legal`; transfer gains `gain_tuned` (L0, fine-tuned) and `gain_other` (L1; None: no
    transfer)."""
    rng = np.random.default_rng(seed * 1000 + sum(map(ord, setting)))

    def jitter(value):
        return float(np.clip(value + noise * rng.standard_normal(), 0, 1))

    def probes(at_in, at_cross):
        matrices, per_game, in_d, cross_l = [], [], [], []
        for layer in LAYERS:
            a, c = (control, control) if layer == 0 else (at_in, at_cross)
            m = np.array([[jitter(a), jitter(c)], [jitter(c), jitter(a)]])
            matrices.append(m.tolist())
            in_d.append(np.diag(m).tolist())
            cross_l.append(float((m[0, 1] + m[1, 0]) / 2))
            # per game: each game's squares read right, in positions, around the matrix
            games = m[:, :, None] * POSITIONS + rng.normal(0, 1.0, (2, 2, N_GAMES))
            games += (m[:, :, None] * POSITIONS * N_GAMES - games.sum(-1, keepdims=True)) / N_GAMES
            per_game.append(games.tolist())
        return {"layers": LAYERS, "languages": LANGUAGES, "in_distribution": in_d,
                "cross_lingual": cross_l, "matrices": matrices,
                "per_game": {"counts": [float(POSITIONS)] * N_GAMES, "hits": per_game},
                "unification": [{"score": jitter(unification)} for _ in LAYERS],
                "n_train": 1000, "n_test": N_GAMES * POSITIONS}

    trained, random_init = probes(in_dist, cross), probes(control, control)
    steps = [0, 50, 100]
    transfer = None
    if gain_other is not None:
        transfer = {"finetune_language": "L0", "steps": [0, 10, 20],
                    "accuracy": {"L0": [0.5, 0.5 + gain_tuned / 2, 0.5 + gain_tuned],
                                 "L1": [0.5, 0.5 + gain_other / 2, 0.5 + gain_other]},
                    "gain": {"L0": gain_tuned, "L1": gain_other},
                    "gain_others": gain_other + noise * rng.standard_normal(),
                    "confusion": None if setting == "unified" else {"L1": [0.0, 0.1, 0.2]},
                    "seconds": 1.0}
    return {
        "setting": setting, "seed": seed, "languages": "atomic,atomic",
        "language_names": LANGUAGES, "scale": "custom", "summary_layer_candidates": [1, 2],
        "model": {"step": 100, "legal_move_accuracy": {"L0": jitter(legal), "L1": jitter(legal)},
                  "val_loss": {"L0": 2.0, "L1": 2.0},
                  "curves": {"loss": {"steps": [10, 50, 100], "values": [4.0, 3.0, 2.5]},
                             "legal_move_accuracy": {"steps": steps, "L0": [0.1, 0.5, legal],
                                                     "L1": [0.1, 0.5, legal]}}},
        "probes": trained, "control": random_init,
        "baselines": {"chance": 1 / 3, "majority_per_square": 0.53,
                      "majority_per_square_per_move": 0.61},
        "emergence": {"steps": steps, "layers": [1, 2],
                      "in_distribution": [[control] * 2, [in_dist] * 2, [in_dist] * 2],
                      "cross_lingual": [[control] * 2, [cross] * 2, [cross] * 2],
                      "unification": [[0.0] * 2, [unification] * 2, [unification] * 2]},
        "transfer": transfer, "transfer_status": "done" if transfer else "skipped",
        "seconds": {"data": 1.0, "training": 10.0, "probes": 5.0, "emergence": 3.0,
                    **({"transfer": 4.0} if transfer else {})},
    }


STUDY = {"format": "mothello-study/2", "languages": "atomic,atomic", "scale": "custom",
         "sizes": {}, "probe": {"kind": "mlp"}}

# every finding of the paper, as the numbers would show it
PAPER = {"naive": dict(in_dist=0.90, cross=0.60, gain_other=-0.05),
         "anchors:4": dict(in_dist=0.90, cross=0.70, gain_other=-0.05),
         "anchors:16": dict(in_dist=0.90, cross=0.80, gain_other=-0.04),
         "unified": dict(in_dist=0.90, cross=0.895, gain_other=0.10)}
# every finding contradicted
CONTRARY = {"naive": dict(in_dist=0.90, cross=0.895, gain_other=0.10),
            "anchors:4": dict(in_dist=0.90, cross=0.70, gain_other=0.10),
            "anchors:16": dict(in_dist=0.90, cross=0.60, gain_other=0.10),
            "unified": dict(in_dist=0.90, cross=0.60, gain_other=-0.10)}


def grid(settings: dict, seeds=(0, 1, 2), **common) -> list[dict]:
    return [cell(name, seed, **{**kwargs, **common})
            for seed in seeds for name, kwargs in settings.items()]
