"""PNGs beside a separated store: the weight map (wB over the scan) and C | A | B panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdeconv.separate.chunk import from_dtype

__all__ = ["write_report", "weight_map_png", "panels_png", "most_mixed"]


def most_mixed(weights: np.ndarray, k: int) -> list[tuple[int, ...]]:
    """Navigation indices of the ``k`` patterns with the largest wB (ties: scan order)."""
    wb = np.nan_to_num(weights[..., 1], nan=-1.0)
    order = np.argsort(-wb.ravel(), kind="stable")[:k]
    return [tuple(int(i) for i in np.unravel_index(j, wb.shape)) for j in order]


def weight_map_png(weights: np.ndarray, path: str | Path, title: str = "") -> Path:
    from kdeconv import figures

    wb = weights[..., 1]
    fig, ax = figures.subplots(figsize=(6, 4.5) if wb.ndim == 2 else (7, 3))
    if wb.ndim == 2:
        image = ax.imshow(wb, vmin=0, vmax=0.5, cmap="viridis", interpolation="nearest")
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
        fig.colorbar(image, ax=ax, label="wB (0 = pure, 0.5 = 50/50)")
    else:
        ax.plot(wb)
        ax.set_ylim(0, 0.5)
        ax.set_xlabel("pattern")
        ax.set_ylabel("wB")
    ax.set_title(title or "weight of the minor constituent, wB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)


def panels_png(c, a, b, weights, where, path: str | Path) -> Path:
    from kdeconv import figures

    rows = len(where)
    fig, axes = figures.subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    for row, (ci, ai, bi, wi, nav) in enumerate(zip(c, a, b, weights, where)):
        for col, (image, name) in enumerate(((ci, "C (raw)"), (ai, f"A  wA={wi[0]:.2f}"),
                                             (bi, f"B  wB={wi[1]:.2f}"))):
            ax = axes[row, col]
            ax.imshow(from_dtype(np.asarray(image)), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}" + (f"  @{nav}" if col == 0 else ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)


def write_report(out_path: str | Path, map_path: str | Path, n_panels: int = 4) -> list[Path]:
    """Write ``OUT.weights.png`` and ``OUT.panels.png`` beside the separated store ``OUT``."""
    import zarr

    out_path = Path(out_path)
    separated = zarr.open_group(str(out_path), mode="r")
    patterns = zarr.open_group(str(map_path), mode="r")["patterns"]
    weights = separated["weights"][...]
    files = [weight_map_png(weights, out_path.with_name(out_path.name + ".weights.png"))]
    where = most_mixed(weights, n_panels)
    if where:
        c = [patterns[idx] for idx in where]
        a = [separated["A"][idx] for idx in where]
        b = [separated["B"][idx] for idx in where]
        w = [weights[idx] for idx in where]
        files.append(panels_png(c, a, b, w, where, out_path.with_name(out_path.name + ".panels.png")))
    return files
