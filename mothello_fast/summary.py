"""The study's summary: every cell's results brought together per setting, with
intervals, baselines, the random-init control, differences between settings, the
verdicts on the paper's findings, and whether the models learned the game at all.

`summarize(cells, study=...)` takes the cells' ``results.json`` contents (see `cell`)
and returns the dict the study writes as ``summary.json``; the report (`report`) draws
only from it. Per setting, a figure is the mean over seeds with a 95% interval
(`statistics`): Student's t over seeds for 2 or more seeds, a bootstrap over the test
games for probe accuracies of a single seed, none otherwise; differences between settings
of the same seeds are paired seed by seed.

Accuracies at a layer are the probe's mean over squares and test positions; a
setting's in-distribution figure is the mean over languages of each language's probe
on its own test positions, its cross-lingual figure the mean of the off-diagonal
entries of the all-pairs matrix (probe trained on language a, tested on b).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .cell import PROTOCOL_LAYER, parse_setting
from .controls import BASELINES
from .findings import LEARNED_LEGAL_ACCURACY, LEARNED_PROBE_MARGIN, verdicts
from .seeds import derive_seed
from .statistics import (Interval, bootstrap_ratio, bootstrap_ratio_difference, t_interval,
                         welch_interval)

__all__ = ["summarize", "setting_order", "SUMMARY_FORMAT"]

SUMMARY_FORMAT = "mothello-study-summary/1"


def setting_order(setting: str) -> tuple:
    """Sort key: naive, anchors by count, unified."""
    anchors, objective = parse_setting(setting)
    return (objective == "unified", anchors, setting)


def _mean_or_nan(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else math.nan


def _diagonal_hits(hits: np.ndarray) -> np.ndarray:
    """hits float [L, L, G] -> float [G]: the mean over languages of a probe on its own."""
    return np.mean([hits[a, a] for a in range(hits.shape[0])], axis=0)


def _cross_hits(hits: np.ndarray) -> np.ndarray:
    """hits float [L, L, G] -> float [G]: the mean over the off-diagonal pairs."""
    L = hits.shape[0]
    return np.mean([hits[a, b] for a in range(L) for b in range(L) if a != b], axis=0)


class _Setting:
    """The cells of one setting, sorted by seed, and the per-seed values read from them."""

    def __init__(self, setting: str, cells: list[dict]):
        self.setting = setting
        self.cells = sorted(cells, key=lambda c: c["seed"])
        self.seeds = [c["seed"] for c in self.cells]
        self.layers = self.cells[0]["probes"]["layers"]
        self.languages = self.cells[0]["language_names"]

    @property
    def n(self) -> int:
        return len(self.cells)

    def per_seed(self, part: str, quantity: str, layer_index: int) -> np.ndarray:
        """float [n_seeds]: the setting's in-distribution or cross-lingual accuracy at a
        layer of the trained model (part "probes") or the control ("control")."""
        if quantity == "in_distribution":
            return np.array([np.mean(c[part]["in_distribution"][layer_index])
                             for c in self.cells])
        if quantity == "gap":
            return self.per_seed(part, "in_distribution", layer_index) \
                - self.per_seed(part, "cross_lingual", layer_index)
        return np.array([_none_nan(c[part][quantity][layer_index]) for c in self.cells])

    def hits(self, part: str, quantity: str, layer_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The single seed's per-game (hits, counts) of a probe accuracy, float [G] each."""
        per_game = self.cells[0][part]["per_game"]
        hits = np.asarray(per_game["hits"][layer_index])
        fn = _diagonal_hits if quantity == "in_distribution" else _cross_hits
        return fn(hits), np.asarray(per_game["counts"])

    def probe_interval(self, part: str, quantity: str, layer_index: int) -> Interval:
        """A probe accuracy (or the gap in-distribution - cross-lingual) with its interval:
        t over seeds, or a bootstrap over test games for one seed."""
        values = self.per_seed(part, quantity, layer_index)
        if np.isnan(values).any():
            return Interval.missing()
        if self.n >= 2:
            return t_interval(values)
        seed = derive_seed(self.seeds[0], f"bootstrap-{part}-{quantity}-{layer_index}")
        if quantity == "gap":
            a, counts = self.hits(part, "in_distribution", layer_index)
            b, _ = self.hits(part, "cross_lingual", layer_index)
            return _keep_mean(bootstrap_ratio_difference(a, b, counts, seed=seed), values[0])
        hits, counts = self.hits(part, quantity, layer_index)
        return _keep_mean(bootstrap_ratio(hits, counts, seed=seed), values[0])


def _keep_mean(interval: Interval, mean: float) -> Interval:
    """The bootstrap's interval around the cell's own figure (the same number, computed
    from per-square means rather than per-game sums: they agree to rounding)."""
    return Interval(float(mean), interval.low, interval.high, interval.n, interval.method)


def _none_nan(value) -> float:
    return math.nan if value is None else float(value)


def _pick_summary_layer(groups: list[_Setting]) -> dict:
    """The protocol's layer 6 when the models have it; else the candidate layer with the
    best cross-lingual accuracy averaged over every cell (in-distribution with one
    language)."""
    candidates = groups[0].cells[0]["summary_layer_candidates"]
    if PROTOCOL_LAYER in candidates:
        return {"layer": PROTOCOL_LAYER,
                "rule": f"the protocol's layer: mOthello probes the output of block "
                        f"{PROTOCOL_LAYER}"}
    multilingual = len(groups[0].languages) > 1
    quantity = "cross_lingual" if multilingual else "in_distribution"
    n_cells = sum(g.n for g in groups)
    scores = {}
    for layer in candidates:
        i = groups[0].layers.index(layer)
        scores[layer] = float(np.mean(np.concatenate([g.per_seed("probes", quantity, i)
                                                       for g in groups])))
    layer = max(scores, key=scores.get)
    n_layers = max(groups[0].layers)
    return {"layer": layer, "scores": {str(k): v for k, v in scores.items()},
            "rule": f"the layer of 1..{n_layers} with the best {quantity.replace('_', '-')} "
                    f"accuracy averaged over all {n_cells} cells of every setting (a "
                    f"{n_layers}-layer model has no layer {PROTOCOL_LAYER}, the protocol's); "
                    "chosen on the test games, so it flatters every setting alike"}


def _intervals(values_by_seed: Sequence[Sequence[float | None]]) -> list[dict]:
    """[seed][point] -> per point the t interval over seeds (None values skipped)."""
    n_points = len(values_by_seed[0])
    out = []
    for j in range(n_points):
        column = [row[j] for row in values_by_seed if row[j] is not None]
        out.append(t_interval(column).to_dict() if column else Interval.missing().to_dict())
    return out


def _common_steps(series: list[dict], key: str = "steps") -> list[int]:
    """The steps every seed measured, in order."""
    common = set(series[0][key])
    for s in series[1:]:
        common &= set(s[key])
    return sorted(common)


def _training(group: _Setting) -> dict:
    curves = [c["model"]["curves"] for c in group.cells]
    loss_steps = _common_steps([c["loss"] for c in curves])
    loss = [[dict(zip(c["loss"]["steps"], c["loss"]["values"]))[s] for s in loss_steps]
            for c in curves]
    legal = [c["legal_move_accuracy"] for c in curves]
    legal_steps = _common_steps(legal)
    accuracy = {}
    for name in group.languages:
        rows = [[dict(zip(r["steps"], r[name]))[s] for s in legal_steps] for r in legal]
        accuracy[name] = [t.get("mean") for t in _intervals(rows)]
    return {"loss": {"steps": loss_steps, "mean": [float(np.mean(col)) for col in zip(*loss)]},
            "legal_move_accuracy": {"steps": legal_steps, **accuracy}}


def _emergence(group: _Setting, layer: int) -> dict | None:
    rows = [c["emergence"] for c in group.cells]
    if layer not in rows[0]["layers"]:
        return None
    steps = _common_steps(rows)
    out = {"layer": layer, "steps": steps}
    for quantity in ("in_distribution", "cross_lingual", "unification"):
        values = []
        for r in rows:
            j = r["layers"].index(layer)
            by_step = dict(zip(r["steps"], (v[j] for v in r[quantity])))
            values.append([by_step[s] for s in steps])
        out[quantity] = _intervals(values)
    return out


def _transfer(group: _Setting) -> dict | None:
    done = [c["transfer"] for c in group.cells if c.get("transfer")]
    if not done:
        return None
    steps = _common_steps(done)
    language = done[0]["finetune_language"]
    out = {"finetune_language": language, "n_seeds": len(done), "steps": steps,
           "accuracy": {}, "gain": {}, "confusion": None}
    for name in done[0]["accuracy"]:
        rows = [[dict(zip(t["steps"], t["accuracy"][name]))[s] for s in steps] for t in done]
        out["accuracy"][name] = _intervals(rows)
        out["gain"][name] = t_interval([t["gain"][name] for t in done]).to_dict()
    others = [t["gain_others"] for t in done if t.get("gain_others") is not None]
    out["gain_others"] = t_interval(others).to_dict() if others else None
    if done[0].get("confusion"):
        out["confusion"] = {}
        for name in done[0]["confusion"]:
            rows = [[dict(zip(t["steps"], t["confusion"][name]))[s] for s in steps]
                    for t in done]
            out["confusion"][name] = _intervals(rows)
    return out


def _setting_summary(group: _Setting, layer: int) -> dict:
    at = group.layers.index(layer)
    summary = {"setting": group.setting, "seeds": group.seeds, "n_seeds": group.n,
               "languages": group.languages, "layers": group.layers}
    for part, key in (("probes", "trained"), ("control", "control")):
        summary[key] = {q: [group.probe_interval(part, q, i).to_dict()
                            for i in range(len(group.layers))]
                        for q in ("in_distribution", "cross_lingual", "gap")}
        summary[key]["matrices"] = np.mean([c[part]["matrices"] for c in group.cells],
                                           axis=0).tolist()
        summary[key]["unification"] = _intervals(
            [[(u or {}).get("score") for u in c[part]["unification"]] for c in group.cells]) \
            if len(group.languages) > 1 else None
        summary[key]["at_summary_layer"] = {
            q: summary[key][q][at] for q in ("in_distribution", "cross_lingual", "gap")}
        summary[key]["at_summary_layer"]["unification"] = \
            summary[key]["unification"][at] if summary[key]["unification"] else None
    summary["baselines"] = {name: t_interval([c["baselines"][name] for c in group.cells])
                            .to_dict() for name in BASELINES}
    legal = {name: t_interval([c["model"]["legal_move_accuracy"][name] for c in group.cells])
             .to_dict() for name in group.languages}
    legal["mean"] = t_interval([np.mean(list(c["model"]["legal_move_accuracy"].values()))
                                for c in group.cells]).to_dict()
    summary["legal_move_accuracy"] = legal
    summary["trained_minus_control"] = t_interval(
        group.per_seed("probes", "in_distribution", at)
        - group.per_seed("control", "in_distribution", at)).to_dict()
    summary["training"] = _training(group)
    summary["emergence"] = _emergence(group, layer)
    summary["transfer"] = _transfer(group)
    summary["seconds"] = {phase: float(np.mean([c["seconds"].get(phase, 0.0)
                                                for c in group.cells]))
                          for phase in ("data", "training", "probes", "emergence", "transfer")}
    return summary


def _paired(differences) -> Interval:
    """The t interval of per-seed differences, named as the paired interval it is."""
    interval = t_interval(differences)
    return Interval(interval.mean, interval.low, interval.high, interval.n, "paired t")


def _differences(groups: list[_Setting], layer: int) -> list[dict]:
    """Every pair of settings (later minus earlier in `setting_order`): cross-lingual
    accuracy at the summary layer and, where both ran transfer, the transfer gain in the
    languages not fine-tuned. Settings run with the same seeds are compared seed by seed
    (a paired t interval: the cells of one seed share their games and training seed);
    others by Welch's interval; one seed each, by a paired bootstrap over the test games."""
    out = []
    for j, b in enumerate(groups):
        for a in groups[j + 1:]:
            ia, ib = a.layers.index(layer), b.layers.index(layer)
            x, y = a.per_seed("probes", "cross_lingual", ia), b.per_seed("probes",
                                                                         "cross_lingual", ib)
            if a.seeds == b.seeds and a.n >= 2:
                # cells of one seed share their games and training seed: a paired design
                cross = _paired(x - y)
            elif a.n >= 2 and b.n >= 2:
                cross = welch_interval(x, y)
            elif a.n == 1 and b.n == 1 and a.seeds == b.seeds and not np.isnan(x).any() \
                    and not np.isnan(y).any():
                ha, counts = a.hits("probes", "cross_lingual", ia)
                hb, _ = b.hits("probes", "cross_lingual", ib)
                boot = bootstrap_ratio_difference(
                    ha, hb, counts, seed=derive_seed(a.seeds[0], f"bootstrap-{a.setting}-"
                                                                 f"{b.setting}"))
                cross = _keep_mean(boot, float(x[0] - y[0]))
            else:
                cross = welch_interval(x, y)
            entry = {"a": a.setting, "b": b.setting, "layer": layer,
                     "cross_lingual": cross.to_dict(), "gain_others": None}
            ga = [c["transfer"]["gain_others"] for c in a.cells
                  if c.get("transfer") and c["transfer"].get("gain_others") is not None]
            gb = [c["transfer"]["gain_others"] for c in b.cells
                  if c.get("transfer") and c["transfer"].get("gain_others") is not None]
            if ga and gb:
                seeds_a = [c["seed"] for c in a.cells if c.get("transfer")]
                seeds_b = [c["seed"] for c in b.cells if c.get("transfer")]
                entry["gain_others"] = (_paired(np.subtract(ga, gb)) if seeds_a == seeds_b
                                        and len(ga) >= 2 else welch_interval(ga, gb)).to_dict()
            out.append(entry)
    return out


def _learned(settings: dict) -> dict:
    """Whether the models learned the game: legal-move accuracy at least
    `LEARNED_LEGAL_ACCURACY` and trained probes at least `LEARNED_PROBE_MARGIN` above the
    random-init control, in every setting."""
    reasons = []
    for name, s in settings.items():
        legal = s["legal_move_accuracy"]["mean"]["mean"]
        if legal < LEARNED_LEGAL_ACCURACY:
            reasons.append(f"{name}: legal-move accuracy {legal:.3f} < "
                           f"{LEARNED_LEGAL_ACCURACY:.2f}")
        margin = s["trained_minus_control"]["mean"]
        if margin < LEARNED_PROBE_MARGIN:
            reasons.append(f"{name}: trained probes only {margin:+.3f} over the random-init "
                           f"control (< {LEARNED_PROBE_MARGIN:.2f})")
    return {"learned": not reasons, "reasons": reasons}


def summarize(cells: list[dict], *, study: dict, pending: Sequence[dict] = ()) -> dict:
    """The summary of a study from its finished cells' results (each a cell's
    ``results.json``); `study`: the study's parameters; `pending`: the cells not
    finished yet (each {"setting", "seed", "status"}), listed as such."""
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        groups.setdefault(cell["setting"], []).append(cell)
    ordered = [_Setting(name, groups[name]) for name in sorted(groups, key=setting_order)]
    summary = {"format": SUMMARY_FORMAT, "study": study,
               "cells": [{"setting": c["setting"], "seed": c["seed"],
                          "status": "done" if c.get("transfer_status") != "pending"
                          else "transfer pending",
                          "seconds": c["seconds"]} for c in cells] + list(pending),
               "settings": {}, "differences": [], "summary_layer": None, "verdicts": [],
               "learned": {"learned": False, "reasons": ["no finished cell"]}}
    if not ordered:
        return summary
    layer = _pick_summary_layer(ordered)
    summary["summary_layer"] = layer
    summary["settings"] = {g.setting: _setting_summary(g, layer["layer"]) for g in ordered}
    summary["differences"] = _differences(ordered, layer["layer"])
    summary["learned"] = _learned(summary["settings"])
    summary["verdicts"] = verdicts(summary)
    phases = ("data", "training", "probes", "emergence", "transfer")
    summary["seconds"] = {p: float(sum(c["seconds"].get(p, 0.0) for c in cells)) for p in phases}
    return summary
