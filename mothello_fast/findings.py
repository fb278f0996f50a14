"""The paper's findings as verdicts computed from a study's summary, with stated criteria.

mOthello (Hua, Yun & Pavlick 2024) reports four findings; `verdicts(summary)` marks
each as ``holds``, ``does not hold``, ``inconclusive`` (the intervals allow both) or
``not tested`` (the grid lacks a setting it needs), from the 95% intervals of the
summary (`summary.summarize`) at its summary layer:

1. Naive multilingual pretraining does not align the languages: naive's gap
   (in-distribution minus cross-lingual accuracy) is above `TOLERANCE`, and unified
   minus naive cross-lingual accuracy is above 0 (when unified was run). It does not
   hold when naive's gap is below `TOLERANCE` or unified minus naive is below 0.
2. Anchor tokens raise alignment, more anchors more: over the settings naive (0
   anchors) and anchors:K sorted by K, every step up in K raises the mean cross-lingual
   accuracy, and the largest K minus the smallest is above 0 with a mean of at least
   `TOLERANCE`. It does not hold when a step's difference is below 0, or when the largest
   minus the smallest is below `TOLERANCE` (no rise worth the name, even a significant
   one of a point).
3. A unified output space aligns the languages: unified's gap is below `TOLERANCE`
   (cross-lingual within 2 points of in-distribution), with its in-distribution probes
   above the random-init control's (otherwise both equal the control trivially). It
   does not hold when the gap is above `TOLERANCE`.
4. Only a unified output space transfers: the gain, after fine-tuning in one language,
   of the languages not fine-tuned is above 0 for unified and for no other setting. It
   does not hold when unified's gain is at or below 0 everywhere in its interval, or
   another setting's gain is above 0.

"Above x" means the whole interval is above x; a single seed's figures without an
interval (legal-move accuracy, transfer gains) are never above or below anything, so
they leave a finding inconclusive.

The numbers only mean something for models that learned the game: `summary` marks a
study whose models reach under `LEARNED_LEGAL_ACCURACY` legal moves, or whose probes
beat the random-init control by under `LEARNED_PROBE_MARGIN`, and the report opens
with a warning.
"""
from __future__ import annotations

from .cell import parse_setting
from .statistics import Interval

__all__ = ["verdicts", "TOLERANCE", "LEARNED_LEGAL_ACCURACY", "LEARNED_PROBE_MARGIN",
           "FINDINGS", "VERDICTS"]

TOLERANCE = 0.02               # accuracy points: "within the interval", "no rise"
LEARNED_LEGAL_ACCURACY = 0.90  # below: the model has not learned the game
LEARNED_PROBE_MARGIN = 0.05    # trained probes must beat the random-init control by this
VERDICTS = ("holds", "does not hold", "inconclusive", "not tested")
FINDINGS = (
    "naive multilingual pretraining does not align the languages",
    "anchor tokens raise alignment, more anchors more",
    "a unified output space aligns the languages",
    "only a unified output space transfers to the languages not fine-tuned",
)


def _interval(data) -> Interval:
    return Interval.missing() if data is None else Interval.from_dict(data)


def _fmt(interval: Interval) -> str:
    if not interval.known:
        return f"{interval.mean:+.3f} (no interval)"
    return f"{interval.mean:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def _difference(summary: dict, a: str, b: str) -> Interval:
    """a minus b at the summary layer, from the summary's differences (either order)."""
    for entry in summary["differences"]:
        if (entry["a"], entry["b"]) == (a, b):
            return _interval(entry["cross_lingual"])
        if (entry["a"], entry["b"]) == (b, a):
            d = _interval(entry["cross_lingual"])
            return Interval(-d.mean, -d.high, -d.low, d.n, d.method)
    return Interval.missing()


def _at(summary: dict, setting: str, part: str, quantity: str) -> Interval:
    return _interval(summary["settings"][setting][part]["at_summary_layer"][quantity])


def _verdict(number: int, verdict: str, criterion: str, evidence: str) -> dict:
    return {"number": number, "finding": FINDINGS[number - 1], "verdict": verdict,
            "criterion": criterion, "evidence": evidence}


def _naive(summary: dict) -> dict:
    criterion = (f"naive's in-distribution minus cross-lingual accuracy above {TOLERANCE}, "
                 "and unified minus naive cross-lingual above 0 (if unified was run)")
    settings = summary["settings"]
    if "naive" not in settings:
        return _verdict(1, "not tested", criterion, "the grid has no naive setting")
    gap = _at(summary, "naive", "trained", "gap")
    evidence = f"naive gap {_fmt(gap)}"
    versus = None
    if "unified" in settings:
        versus = _difference(summary, "unified", "naive")
        evidence += f"; unified - naive cross-lingual {_fmt(versus)}"
    if gap.below(TOLERANCE) or (versus is not None and versus.below(0)):
        verdict = "does not hold"
    elif gap.above(TOLERANCE) and (versus is None or versus.above(0)):
        verdict = "holds"
    else:
        verdict = "inconclusive"
    return _verdict(1, verdict, criterion, evidence)


def _anchors(summary: dict) -> dict:
    criterion = ("cross-lingual accuracy rises with every step up in the number of anchors "
                 "(naive = 0), and the most anchors minus the fewest is above 0, by "
                 f"{TOLERANCE} or more on average; not if a step falls, or the rise is below "
                 f"{TOLERANCE}")
    by_count = {}
    for name in summary["settings"]:
        count, objective = parse_setting(name)
        if objective == "standard":
            by_count[count] = name
    counts = sorted(by_count)
    if len(counts) < 2 or counts[-1] == 0:
        return _verdict(2, "not tested", criterion, "the grid needs anchors:K and naive or "
                        "two anchor counts")
    steps = [_difference(summary, by_count[hi], by_count[lo])
             for lo, hi in zip(counts, counts[1:])]
    overall = _difference(summary, by_count[counts[-1]], by_count[counts[0]])
    evidence = "; ".join(f"{by_count[hi]} - {by_count[lo]} {_fmt(d)}"
                         for (lo, hi), d in zip(zip(counts, counts[1:]), steps))
    if len(steps) > 1:
        evidence += f"; {by_count[counts[-1]]} - {by_count[counts[0]]} {_fmt(overall)}"
    if all(d.mean > 0 for d in steps) and overall.above(0) and overall.mean >= TOLERANCE:
        verdict = "holds"
    elif any(d.below(0) for d in steps) or overall.below(TOLERANCE):
        verdict = "does not hold"
    else:
        verdict = "inconclusive"
    return _verdict(2, verdict, criterion, evidence)


def _unified(summary: dict) -> dict:
    criterion = (f"unified's in-distribution minus cross-lingual accuracy below {TOLERANCE}, "
                 "with its in-distribution probes above the random-init control's")
    if "unified" not in summary["settings"]:
        return _verdict(3, "not tested", criterion, "the grid has no unified setting")
    gap = _at(summary, "unified", "trained", "gap")
    trained = _at(summary, "unified", "trained", "in_distribution")
    control = _at(summary, "unified", "control", "in_distribution")
    learned = trained.known and control.known and trained.low > control.high
    evidence = (f"unified gap {_fmt(gap)}; in-distribution {_fmt(trained)} vs random-init "
                f"control {_fmt(control)}")
    if gap.above(TOLERANCE):
        verdict = "does not hold"
    elif gap.below(TOLERANCE) and learned:
        verdict = "holds"
    else:
        verdict = "inconclusive"
    return _verdict(3, verdict, criterion, evidence)


def _transfer(summary: dict) -> dict:
    criterion = ("the gain of the languages not fine-tuned is above 0 for unified and for no "
                 "other setting")
    gains = {name: _interval(s["transfer"]["gain_others"])
             for name, s in summary["settings"].items()
             if s.get("transfer") and s["transfer"].get("gain_others")}
    if "unified" not in gains or len(gains) < 2:
        return _verdict(4, "not tested", criterion, "needs transfer results of unified and of "
                        "another setting")
    evidence = "; ".join(f"{name} {_fmt(g)}" for name, g in gains.items())
    unified = gains.pop("unified")
    if (unified.known and unified.high <= 0) or any(g.above(0) for g in gains.values()):
        verdict = "does not hold"
    elif unified.above(0):
        verdict = "holds"
    else:
        verdict = "inconclusive"
    return _verdict(4, verdict, criterion, evidence)


def verdicts(summary: dict) -> list[dict]:
    """One verdict per finding (see the module docstring): {"number", "finding",
    "verdict" (one of `VERDICTS`), "criterion", "evidence"}."""
    return [_naive(summary), _anchors(summary), _unified(summary), _transfer(summary)]
