"""Figures as the toolkit draws and saves them: matplotlib's Agg backend (no display
needed), files (PNG unless the path says otherwise) written atomically (a save that fails
leaves the old file whole)."""
from __future__ import annotations

import io
from pathlib import Path

from .storage import atomic_write_bytes

__all__ = ["new_figure", "save_figure"]


def new_figure(figsize: tuple[float, float] = (5.5, 4), dpi: int = 100, **subplots):
    """``(fig, ax)``: one set of axes (or a grid of them, with `plt.subplots`' keyword
    arguments ``nrows``, ``ncols``, ``sharey``, ``squeeze``...), on the Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=figsize, dpi=dpi, **subplots)


def save_figure(fig, path) -> Path:
    """Lay out `fig`, write it to `path` atomically, and close it (also when drawing
    fails, so that failed plots do not pile up in pyplot's open figures). The format is
    the suffix's, as ``fig.savefig(path)`` picks it (``.svg``, ``.pdf``, ...); PNG for a
    path without one."""
    import matplotlib.pyplot as plt
    path = Path(path)
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format=path.suffix[1:].lower() or "png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
