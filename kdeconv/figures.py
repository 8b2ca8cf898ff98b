"""Figures written to files without pyplot: no backend is switched and no global figure is left,
so writing a report from a notebook leaves its plotting alone."""

from __future__ import annotations

__all__ = ["subplots"]


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, constrained_layout: bool = False, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` gives them, on a figure of its own (save it with
    ``figure.savefig``; nothing to close)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained" if constrained_layout else None)
    return figure, figure.subplots(nrows, ncols, **kwargs)
