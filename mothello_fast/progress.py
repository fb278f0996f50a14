"""Progress bars: one rule for every long loop of the toolkit.

A bar is drawn only when asked for (``progress=True``, the commands without ``--quiet``)
and where it can be redrawn in place: on a terminal or in a notebook. Written to a log
file, a bar's redraws and its clearing would leave carriage returns and blank lines, so
there it is off (tqdm's ``disable=None``) and the commands' own lines are the record.
"""
from __future__ import annotations

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(enabled: bool = True, iterable=None, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)`` shown when `enabled` and stderr is a terminal (or in a
    notebook); otherwise a silent bar with the same methods."""
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
