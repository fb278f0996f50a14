"""The study's report: figures (matplotlib, Agg), ``report.md`` and a self-contained
``report.html`` (figures embedded: it opens offline), all drawn from ``summary.json``.

``write_study_report(summary, out_dir)`` writes them atomically. The report is built
once as a list of blocks (headings, paragraphs, tables, figures, a warning) and
rendered twice, to Markdown and to HTML, so the two always say the same.

When the models have not learned the game (`summary["learned"]`), the report opens
with a warning that its numbers are a smoke test, not evidence.
"""
from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .controls import CHANCE
from .findings import LEARNED_LEGAL_ACCURACY, LEARNED_PROBE_MARGIN
from .plots import new_figure, save_figure
from .storage import atomic_write_bytes

__all__ = ["write_study_report", "study_markdown", "study_html", "report_blocks",
           "format_accuracy", "format_interval", "FIGURES"]

FIGURES = ("settings.png", "probe_by_layer.png", "alignment_matrices.png", "emergence.png",
           "training.png", "transfer.png", "confusion.png")
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
            "tab:pink", "tab:olive")


def format_accuracy(value: float | None) -> str:
    """``0.1234`` as "0.1234"; None or nan as "n/a"."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.4f}"


def format_interval(data: dict | None, signed: bool = False) -> str:
    """An interval dict (`statistics.Interval.to_dict`) as "0.612 [0.598, 0.626]"."""
    if data is None or data.get("mean") is None:
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    if data.get("low") is None:
        return f.format(data["mean"])
    return f"{f.format(data['mean'])} [{f.format(data['low'])}, {f.format(data['high'])}]"


def _curve(intervals: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mean, low, high float arrays from interval dicts (nan where missing)."""
    def get(key):
        return np.array([np.nan if d is None or d.get(key) is None else d[key]
                         for d in intervals], dtype=float)
    return get("mean"), get("low"), get("high")


def _band(ax, x, intervals: list[dict], **style) -> None:
    mean, low, high = _curve(intervals)
    ax.plot(x, mean, **style)
    if np.isfinite(low).any():
        ax.fill_between(x, low, high, alpha=0.2, color=style.get("color"), linewidth=0)


def _setting_axes(n: int, height: float = 3.4):
    """A row of n axes sharing y, one per setting."""
    fig, axes = new_figure(figsize=(max(4.0, 3.4 * n), height), ncols=n, sharey=True,
                           squeeze=False)
    return fig, axes[0]


def plot_settings(summary: dict, path) -> Path:
    """At the summary layer, settings side by side: in-distribution and cross-lingual
    accuracy of the trained model and of the random-init control, with 95% intervals and
    the baselines as lines; y from chance to 1."""
    settings = summary["settings"]
    names = list(settings)
    fig, ax = new_figure(figsize=(max(5.0, 1.6 * len(names) + 2), 4))
    x = np.arange(len(names))
    bars = (("trained", "in_distribution", "in-distribution", "tab:blue", 0.0),
            ("trained", "cross_lingual", "cross-lingual", "tab:orange", 0.2),
            ("control", "in_distribution", "random-init in-dist.", "0.6", 0.4),
            ("control", "cross_lingual", "random-init cross", "0.8", 0.6))
    for part, quantity, label, colour, offset in bars:
        mean, low, high = _curve([settings[n][part]["at_summary_layer"][quantity]
                                  for n in names])
        err = np.where(np.isfinite(low), [mean - low, high - mean], 0)
        ax.bar(x - 0.3 + offset, mean - CHANCE, width=0.2, bottom=CHANCE, yerr=err,
               color=colour, label=label, capsize=2)
    for name, style in (("majority_per_square", ":"), ("majority_per_square_per_move", "--")):
        value = np.mean([settings[n]["baselines"][name]["mean"] for n in names])
        ax.axhline(value, color="k", linestyle=style, linewidth=1,
                   label=name.replace("_", " "))
    ax.set_xticks(x, names)
    ax.set_ylim(CHANCE, 1.0)
    ax.set(ylabel="board-state probe accuracy",
           title=f"settings at layer {summary['summary_layer']['layer']} (chance = 1/3)")
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def plot_probe_by_layer(summary: dict, path) -> Path:
    """Per setting: in-distribution and cross-lingual accuracy by layer with 95% bands, the
    random-init control, and the baselines; y from chance to 1."""
    settings = summary["settings"]
    fig, axes = _setting_axes(len(settings))
    for ax, (name, s) in zip(axes, settings.items()):
        layers = s["layers"]
        _band(ax, layers, s["trained"]["in_distribution"], color="tab:blue", marker="o",
              label="in-distribution")
        if len(s["languages"]) > 1:
            _band(ax, layers, s["trained"]["cross_lingual"], color="tab:orange", marker="s",
                  label="cross-lingual")
            _band(ax, layers, s["control"]["cross_lingual"], color="0.5", linestyle="--",
                  label="random-init cross")
        _band(ax, layers, s["control"]["in_distribution"], color="0.3", linestyle=":",
              label="random-init in-dist.")
        for key, style in (("majority_per_square", (0, (1, 3))),
                           ("majority_per_square_per_move", (0, (5, 3)))):
            ax.axhline(s["baselines"][key]["mean"], color="k", linestyle=style, linewidth=0.8,
                       label=key.replace("_", " "))
        ax.axvline(summary["summary_layer"]["layer"], color="0.85", zorder=0)
        ax.set_xticks(layers)
        ax.set_ylim(CHANCE, 1.0)
        ax.set(xlabel="layer (0 = embeddings)", title=name)
    axes[0].set_ylabel("board-state probe accuracy")
    axes[-1].legend(fontsize=6)
    return save_figure(fig, path)


def plot_alignment_matrices(summary: dict, path) -> Path:
    """The all-pairs matrix (mean over seeds) of every setting (rows) at every layer
    (columns): probe trained on the row language, tested on the column language."""
    settings = summary["settings"]
    layers = next(iter(settings.values()))["layers"]
    fig, axes = new_figure(figsize=(1.9 * len(layers) + 1, 1.9 * len(settings) + 0.5),
                           nrows=len(settings), ncols=len(layers), squeeze=False)
    for row, (name, s) in zip(axes, settings.items()):
        for ax, layer, matrix in zip(row, layers, s["trained"]["matrices"]):
            matrix = np.asarray(matrix)
            ax.imshow(matrix, vmin=CHANCE, vmax=1.0, cmap="viridis")
            for (a, b), value in np.ndenumerate(matrix):
                ax.text(b, a, f"{value:.2f}", ha="center", va="center", color="w", fontsize=6)
            ax.set_xticks(range(len(s["languages"])), s["languages"], fontsize=6)
            ax.set_yticks(range(len(s["languages"])), s["languages"], fontsize=6)
            ax.set_title(f"{name}, layer {layer}", fontsize=7)
    return save_figure(fig, path)


def plot_emergence(summary: dict, path) -> Path:
    """Against the training step, per setting: cross-lingual probe accuracy and the
    unification score at the summary layer (step 0: the random-init model)."""
    fig, axes = new_figure(figsize=(10, 3.6), ncols=2)
    for colour, (name, s) in zip(_COLOURS, summary["settings"].items()):
        grown = s.get("emergence")
        if not grown:
            continue
        _band(axes[0], grown["steps"], grown["cross_lingual"], color=colour, marker="o",
              label=name)
        _band(axes[0], grown["steps"], grown["in_distribution"], color=colour,
              linestyle=":", linewidth=1)
        _band(axes[1], grown["steps"], grown["unification"], color=colour, marker="o",
              label=name)
    layer = summary["summary_layer"]["layer"]
    axes[0].set(xlabel="training step", ylabel="probe accuracy",
                title=f"cross-lingual (solid), in-distribution (dotted), layer {layer}")
    axes[0].set_ylim(CHANCE, 1.0)
    axes[1].axhline(0, color="k", linewidth=0.6)
    axes[1].set(xlabel="training step", ylabel="cross - within cosine",
                title=f"unification score, layer {layer}")
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def plot_training(summary: dict, path) -> Path:
    """Loss and legal-move accuracy (mean over languages and seeds) by step per setting."""
    fig, axes = new_figure(figsize=(10, 3.6), ncols=2)
    for colour, (name, s) in zip(_COLOURS, summary["settings"].items()):
        loss = s["training"]["loss"]
        axes[0].plot(loss["steps"], loss["mean"], color=colour, label=name)
        legal = s["training"]["legal_move_accuracy"]
        values = np.array([[np.nan if v is None else v for v in legal[n]]
                           for n in s["languages"]], dtype=float)
        axes[1].plot(legal["steps"], values.mean(0), color=colour, marker="o", label=name)
    axes[1].axhline(LEARNED_LEGAL_ACCURACY, color="k", linestyle="--", linewidth=0.8,
                    label=f"{LEARNED_LEGAL_ACCURACY:.0%}: learned")
    axes[0].set(xlabel="step", ylabel="training loss", title="loss")
    axes[1].set(xlabel="step", ylabel="legal-move accuracy", ylim=(0, 1),
                title="legal-move accuracy (held-out games)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return save_figure(fig, path)


def plot_transfer(summary: dict, path) -> Path:
    """Per setting: legal-move accuracy of every language across the fine-tuning steps
    (in the fine-tuned language only), with 95% bands."""
    settings = {n: s for n, s in summary["settings"].items() if s.get("transfer")}
    fig, axes = _setting_axes(max(1, len(settings)))
    for ax, (name, s) in zip(axes, settings.items()):
        t = s["transfer"]
        for colour, (language, curve) in zip(_COLOURS, t["accuracy"].items()):
            tuned = language == t["finetune_language"]
            _band(ax, t["steps"], curve, color=colour, marker="o",
                  linestyle="-" if tuned else "--",
                  label=f"{language}{' (fine-tuned)' if tuned else ''}")
        ax.set(xlabel="fine-tuning step", title=name, ylim=(0, 1))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("legal-move accuracy")
    return save_figure(fig, path)


def plot_confusion(summary: dict, path) -> Path:
    """Per setting: how often a language not fine-tuned is answered in the fine-tuned
    language's tokens, across fine-tuning."""
    fig, ax = new_figure(figsize=(6, 3.6))
    for colour, (name, s) in zip(_COLOURS, summary["settings"].items()):
        t = s.get("transfer")
        if not t or not t.get("confusion"):
            continue
        for language, curve in t["confusion"].items():
            _band(ax, t["steps"], curve, color=colour, marker="o", label=f"{name}: {language}")
    ax.set(xlabel="fine-tuning step", ylabel="share of predictions", ylim=(0, 1),
           title="answers in the fine-tuned language's tokens")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return save_figure(fig, path)


_PLOTS = {"settings.png": plot_settings, "probe_by_layer.png": plot_probe_by_layer,
          "alignment_matrices.png": plot_alignment_matrices, "emergence.png": plot_emergence,
          "training.png": plot_training, "transfer.png": plot_transfer,
          "confusion.png": plot_confusion}


@dataclass
class Block:
    """One piece of the report: kind "h1", "h2", "p", "warning", "table" (header, rows)
    or "figure" (file, caption)."""
    kind: str
    text: str = ""
    header: tuple = ()
    rows: tuple = ()


def _warning(summary: dict) -> Block | None:
    learned = summary["learned"]
    if learned["learned"]:
        return None
    return Block("warning", "These models have not learned the game, so the numbers below "
                 "are a smoke test, not evidence. A study is evidence only when every "
                 f"setting reaches {LEARNED_LEGAL_ACCURACY:.0%} legal moves and its trained "
                 f"probes beat the random-init control by {LEARNED_PROBE_MARGIN:.2f}. Here: "
                 + "; ".join(learned["reasons"]) + ".")


def report_blocks(summary: dict) -> list[Block]:
    """The report's content, in order."""
    study = summary["study"]
    blocks = [Block("h1", f"mOthello study: languages {study['languages']}, scale "
                          f"{study['scale']}")]
    warning = _warning(summary)
    if warning is not None:
        blocks.append(warning)
    if study["scale"] == "tiny":
        blocks.append(Block("p", "Scale tiny is a smoke test: it shows that every step runs, "
                                 "not what the study finds."))
    settings = summary["settings"]
    pending = [c for c in summary["cells"] if c["status"] != "done"]
    unfinished = ", ".join(f"{c['setting']} seed {c['seed']} ({c['status']})" for c in pending)
    blocks.append(Block("p", f"{len(summary['cells']) - len(pending)} of "
                             f"{len(summary['cells'])} cells finished"
                             + (f" (not finished: {unfinished})" if pending else "")
                             + f". Probe: {study['probe']['kind']}, absolute board labels. "
                             "Figures are means over seeds with 95% intervals (t over "
                             "seeds; one seed: bootstrap over the test games)."))
    if not settings:
        return blocks
    layer = summary["summary_layer"]
    blocks.append(Block("p", f"Summary layer {layer['layer']}: {layer['rule']}."))

    blocks.append(Block("h2", "Verdicts on the paper's findings"))
    blocks.append(Block("table", header=("finding", "verdict", "criterion", "evidence"),
                        rows=tuple((v["finding"], v["verdict"], v["criterion"], v["evidence"])
                                   for v in summary["verdicts"])))

    blocks.append(Block("h2", f"Settings side by side at layer {layer['layer']}"))
    rows = []
    for name, s in settings.items():
        at, control = s["trained"]["at_summary_layer"], s["control"]["at_summary_layer"]
        rows.append((name, str(s["n_seeds"]), format_interval(s["legal_move_accuracy"]["mean"]),
                     format_interval(at["in_distribution"]), format_interval(at["cross_lingual"]),
                     format_interval(at["gap"], signed=True),
                     format_interval(control["in_distribution"]),
                     format_interval(control["cross_lingual"]),
                     format_interval(s["baselines"]["majority_per_square"]),
                     format_interval(s["baselines"]["majority_per_square_per_move"]),
                     format_interval(at["unification"], signed=True)))
    blocks.append(Block("table", header=("setting", "seeds", "legal moves", "in-dist.",
                                         "cross-lingual", "in-dist. - cross",
                                         "random-init in-dist.", "random-init cross",
                                         "majority/square", "majority/square/move",
                                         "unification"), rows=tuple(rows)))
    blocks.append(Block("p", f"Chance is {CHANCE:.3f}. The random-init control is the "
                             "trained model's own initialisation, probed exactly as the "
                             "trained model; the baselines predict each square's most common "
                             "state on the probe games (overall, and after each move number)."))
    blocks.append(Block("figure", "settings.png", rows=("settings at the summary layer",)))

    if summary["differences"]:
        blocks.append(Block("h2", "Differences between settings"))
        blocks.append(Block("table", header=("a - b", "cross-lingual", "transfer gain, "
                                             "languages not fine-tuned"),
                            rows=tuple((f"{d['a']} - {d['b']}",
                                        format_interval(d["cross_lingual"], signed=True),
                                        format_interval(d["gain_others"], signed=True))
                                       for d in summary["differences"])))

    blocks.append(Block("h2", "In-distribution and cross-lingual accuracy by layer"))
    for name, s in settings.items():
        blocks.append(Block("table", header=(f"{name}: layer", "in-dist.", "cross-lingual",
                                             "random-init in-dist.", "random-init cross"),
                            rows=tuple((str(layer_), format_interval(a), format_interval(b),
                                        format_interval(c), format_interval(d))
                                       for layer_, a, b, c, d in zip(
                                           s["layers"], s["trained"]["in_distribution"],
                                           s["trained"]["cross_lingual"],
                                           s["control"]["in_distribution"],
                                           s["control"]["cross_lingual"]))))
    blocks.append(Block("figure", "probe_by_layer.png", rows=("probe accuracy by layer",)))
    blocks.append(Block("figure", "alignment_matrices.png",
                        rows=("all-pairs matrices (rows: trained on; columns: tested on)",)))

    blocks.append(Block("h2", "Emergence over training"))
    blocks.append(Block("p", "Cross-lingual probe accuracy and the unification score (Blum et "
                             "al. 2025: same position across languages minus different "
                             "positions within a language, cosine of centred means) at each "
                             "saved checkpoint; step 0 is the random-init model."))
    rows = []
    for name, s in settings.items():
        grown = s.get("emergence")
        if grown:
            for step, c, u in zip(grown["steps"], grown["cross_lingual"], grown["unification"]):
                rows.append((name, str(step), format_interval(c), format_interval(u,
                                                                                  signed=True)))
    blocks.append(Block("table", header=("setting", "step", "cross-lingual", "unification"),
                        rows=tuple(rows)))
    blocks.append(Block("figure", "emergence.png", rows=("emergence",)))

    blocks.append(Block("h2", "Training"))
    blocks.append(Block("table", header=("setting",) + tuple(
        f"legal moves {n}" for n in next(iter(settings.values()))["languages"]),
        rows=tuple((name,) + tuple(format_interval(s["legal_move_accuracy"][n])
                                   for n in s["languages"]) for name, s in settings.items())))
    blocks.append(Block("figure", "training.png", rows=("loss and legal-move accuracy",)))

    with_transfer = {n: s for n, s in settings.items() if s.get("transfer")}
    blocks.append(Block("h2", "Transfer"))
    if not with_transfer:
        blocks.append(Block("p", "Transfer was not run (or has not finished)."))
    else:
        rows = []
        for name, s in with_transfer.items():
            t = s["transfer"]
            for language, gain in t["gain"].items():
                curve = t["accuracy"][language]
                confusion = (t.get("confusion") or {}).get(language)
                rows.append((name, language + (" (fine-tuned)" if language ==
                                               t["finetune_language"] else ""),
                             format_interval(curve[0]), format_interval(curve[-1]),
                             format_interval(gain, signed=True),
                             format_interval(confusion[-1]) if confusion else "n/a"))
        blocks.append(Block("table", header=("setting", "language", "pretrained",
                                             "fine-tuned", "gain", "confusion at the end"),
                            rows=tuple(rows)))
        blocks.append(Block("p", "Pretraining on games opening c4 c3 c2 in every language, "
                                 "fine-tuning in one language on the full distribution. "
                                 "Confusion: the share of a language's next-move predictions "
                                 "written in the fine-tuned language's tokens (n/a for unified: "
                                 "it answers in its shared output space)."))
        blocks.append(Block("figure", "transfer.png", rows=("transfer curves",)))
        blocks.append(Block("figure", "confusion.png", rows=("language confusion",)))

    blocks.append(Block("h2", "Cells and time"))
    blocks.append(Block("table", header=("setting", "seed", "status", "data s", "training s",
                                         "probes s", "emergence s", "transfer s"),
                        rows=tuple((c["setting"], str(c["seed"]), c["status"]) + tuple(
                            f"{c.get('seconds', {}).get(p, 0.0):.0f}"
                            for p in ("data", "training", "probes", "emergence", "transfer"))
                            for c in summary["cells"])))
    return blocks


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def study_markdown(summary: dict) -> str:
    """The report as Markdown (figures referenced by file name, beside report.md)."""
    lines = []
    for block in report_blocks(summary):
        if block.kind == "h1":
            lines += [f"# {block.text}", ""]
        elif block.kind == "h2":
            lines += [f"## {block.text}", ""]
        elif block.kind == "p":
            lines += [block.text, ""]
        elif block.kind == "warning":
            lines += [f"> **Warning.** {block.text}", ""]
        elif block.kind == "table":
            lines.append("| " + " | ".join(map(_markdown_cell, block.header)) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(map(_markdown_cell, row)) + " |" for row in block.rows]
            lines.append("")
        elif block.kind == "figure":
            lines += [f"![{block.rows[0]}]({block.text})", ""]
    return "\n".join(lines)


_STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
          "line-height:1.4}table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.85em}"
          "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
          ".warning{background:#fff3cd;border:2px solid #d39e00;padding:0.8em 1em;"
          "font-weight:bold}img{max-width:100%}")


def study_html(summary: dict, figures: dict[str, bytes]) -> str:
    """The report as one HTML page, with the PNG `figures` (name -> bytes) embedded."""
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
             f"<title>{html.escape(report_blocks(summary)[0].text)}</title>",
             f"<style>{_STYLE}</style></head><body>"]
    for block in report_blocks(summary):
        text = html.escape(block.text)
        if block.kind in ("h1", "h2"):
            parts.append(f"<{block.kind}>{text}</{block.kind}>")
        elif block.kind == "p":
            parts.append(f"<p>{text}</p>")
        elif block.kind == "warning":
            parts.append(f"<p class='warning'>Warning. {text}</p>")
        elif block.kind == "table":
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>"
                                                 for h in block.header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                      for row in block.rows]
            parts.append("</table>")
        elif block.kind == "figure" and block.text in figures:
            data = base64.b64encode(figures[block.text]).decode("ascii")
            parts.append(f"<figure><img alt='{html.escape(block.rows[0])}' "
                         f"src='data:image/png;base64,{data}'><figcaption>"
                         f"{html.escape(block.rows[0])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_study_report(summary: dict, out_dir) -> dict[str, Path]:
    """Write the figures, ``report.md`` and ``report.html`` of `summary` into `out_dir`
    (created if missing); returns their paths. A study without finished cells gets the
    reports without figures, one without transfer results no transfer figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    transfer = any(s.get("transfer") for s in summary["settings"].values())
    for name, plot in _PLOTS.items() if summary["settings"] else ():
        if transfer or name not in ("transfer.png", "confusion.png"):
            paths[name] = plot(summary, out_dir / name)
    figures = {name: path.read_bytes() for name, path in paths.items()}
    atomic_write_bytes(out_dir / "report.md", study_markdown(summary).encode())
    atomic_write_bytes(out_dir / "report.html", study_html(summary, figures).encode())
    paths["report.md"], paths["report.html"] = out_dir / "report.md", out_dir / "report.html"
    return paths
