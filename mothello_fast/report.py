"""Plots and a Markdown summary of a study's results (matplotlib, Agg backend).

``write_study_report(results, out_dir)`` writes ``probe_by_layer.png``,
``alignment.png``, ``transfer.png`` and ``report.md`` from the dict that
`study.run_study` stores in ``results.json``; each file is written atomically.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .plots import new_figure, save_figure
from .storage import atomic_write_bytes

__all__ = ["plot_probe_by_layer", "plot_alignment", "plot_transfer", "study_markdown",
           "write_study_report", "format_accuracy"]


def plot_probe_by_layer(results: dict, path) -> Path:
    """Probe accuracy by layer: each language in-distribution, and the cross-lingual mean."""
    probe = results["probe"]
    fig, ax = new_figure()
    in_dist = np.asarray(probe["in_distribution"])     # (n_layers, L)
    for j, name in enumerate(results["language_names"]):
        ax.plot(probe["layers"], in_dist[:, j], marker="o", label=f"{name} on {name}")
    if len(results["language_names"]) > 1:
        ax.plot(probe["layers"], probe["cross_lingual"], marker="s", linestyle="--", color="k",
                label="cross-lingual (mean)")
    ax.set_xticks(probe["layers"])
    ax.set(xlabel="layer (0 = embeddings)", ylabel="board-state accuracy",
           title=f"{probe['kind']} probe by layer, {results['setting']}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_alignment(results: dict, path) -> Path:
    """Heatmap of the alignment matrix (rows: training language, columns: test language)."""
    alignment = results["alignment"]
    matrix = np.asarray(alignment["matrix"])
    names = alignment["languages"]
    fig, ax = new_figure()
    image = ax.imshow(matrix, vmin=min(0.5, float(matrix.min())), vmax=1.0, cmap="viridis")
    for (a, b), value in np.ndenumerate(matrix):
        ax.text(b, a, f"{value:.3f}", ha="center", va="center", color="w", fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="tested on", ylabel="probe trained on",
           title=f"alignment at layer {alignment['layer']}, {results['setting']}")
    fig.colorbar(image, ax=ax)
    return save_figure(fig, path)


def plot_transfer(results: dict, path) -> Path:
    """Legal-move accuracy of every language across the fine-tuning checkpoints."""
    transfer = results["transfer"]
    fig, ax = new_figure()
    for name, curve in transfer["accuracy"].items():
        style = "-" if name == transfer["finetune_language"] else "--"
        ax.plot(transfer["steps"], curve, style, marker="o", label=name)
    ax.set(xlabel=f"fine-tuning step (in {transfer['finetune_language']} only)",
           ylabel="legal-move accuracy", title=f"transfer, {results['setting']}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def format_accuracy(value: float | None) -> str:
    """``0.1234`` as "0.1234"; None (no cross-lingual figure for one language) as "n/a"."""
    return "n/a" if value is None else f"{value:.4f}"


def study_markdown(results: dict) -> str:
    """A short Markdown report of a study."""
    alignment, transfer = results["alignment"], results["transfer"]
    names = alignment["languages"]
    lines = [f"# mOthello study: {results['setting']}, languages {results['languages']}, "
             f"scale {results['scale']}", "",
             f"Seed {results['seed']}; model trained {results['model']['step']} steps.", "",
             "## Legal-move accuracy", "", "| language | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in results["model"]["legal_move_accuracy"].items()]
    lines += ["", f"## Board-state probes ({results['probe']['kind']}, absolute labels)", "",
              "| layer | " + " | ".join(f"{n} on {n}" for n in names) + " | cross-lingual |",
              "|---" * (len(names) + 2) + "|"]
    for layer, row, cross in zip(results["probe"]["layers"], results["probe"]["in_distribution"],
                                 results["probe"]["cross_lingual"]):
        lines.append(f"| {layer} | " + " | ".join(f"{v:.4f}" for v in row)
                     + f" | {format_accuracy(cross)} |")
    lines += ["", f"## Alignment matrix at layer {alignment['layer']}", "",
              "rows: probe trained on; columns: tested on", "",
              "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {a} | " + " | ".join(f"{v:.4f}" for v in row) + " |"
              for a, row in zip(names, alignment["matrix"])]
    lines += ["", f"In-distribution {alignment['in_distribution']:.4f}, cross-lingual "
              f"{format_accuracy(alignment['cross_lingual'])}.", "",
              f"## Transfer (fine-tuned in {transfer['finetune_language']} only)", "",
              "| language | pretrained | fine-tuned | gain |", "|---|---|---|---|"]
    lines += [f"| {k} | {v[0]:.4f} | {v[-1]:.4f} | {transfer['gain'][k]:+.4f} |"
              for k, v in transfer["accuracy"].items()]
    lines += ["", "![probe accuracy by layer](probe_by_layer.png)",
              "![alignment](alignment.png)", "![transfer](transfer.png)", ""]
    return "\n".join(lines)


def write_study_report(results: dict, out_dir) -> dict[str, Path]:
    """Write the three plots and ``report.md`` into `out_dir` (created if missing); returns
    their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"probe_by_layer": plot_probe_by_layer(results, out_dir / "probe_by_layer.png"),
             "alignment": plot_alignment(results, out_dir / "alignment.png"),
             "transfer": plot_transfer(results, out_dir / "transfer.png")}
    atomic_write_bytes(out_dir / "report.md", study_markdown(results).encode())
    paths["report"] = out_dir / "report.md"
    return paths
