"""The run's metrics log: ``metrics.csv`` (train rows every ``log_every`` steps, a val row per
evaluation) and ``curves.png`` drawn from it."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

__all__ = ["CSV_FIELDS", "MetricsLog", "write_curves"]

CSV_FIELDS = ["step", "kind", "epoch", "seconds", "lr", "loss", "separation", "weight_mae",
              "ncc_a", "ncc_b", "ncc_median", "samples_per_s"]
VAL_FIELDS = ("loss", "weight_mae", "ncc_a", "ncc_b", "ncc_median")


def write_curves(csv_path: Path, png_path: Path) -> None:
    """Training curves from metrics.csv: loss (train, val) and validation NCC vs step."""
    from kdeconv import figures

    rows = list(csv.DictReader(csv_path.open()))
    tr = [r for r in rows if r["kind"] == "train"]
    va = [r for r in rows if r["kind"] == "val"]
    fig, (ax1, ax2) = figures.subplots(1, 2, figsize=(10, 4))
    if tr:
        ax1.plot([int(r["step"]) for r in tr], [float(r["loss"]) for r in tr], lw=0.8, label="train")
    if va:
        steps = [int(r["step"]) for r in va]
        ax1.plot(steps, [float(r["loss"]) for r in va], "o-", label="validation")
        ax2.plot(steps, [float(r["ncc_a"]) for r in va], "o-", label="NCC A")
        ax2.plot(steps, [float(r["ncc_b"]) for r in va], "s-", label="NCC B")
        ax2.plot(steps, [1 - float(r["weight_mae"]) for r in va], "^-", label="1 - weight MAE")
    ax1.set(xlabel="step", ylabel="loss", yscale="log", title="loss")
    ax2.set(xlabel="step", ylabel="median", title="validation", ylim=(None, 1.0))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, png_path)


class MetricsLog:
    """Appends to ``out/metrics.csv`` from ``step`` on (rows logged after ``step`` by a run that
    crashed after its last checkpoint are dropped first); ``close()`` when done.

    Train rows are means over the steps since the previous train row, with samples/s.
    """

    def __init__(self, out: Path, step: int, log_every: int, batch_size: int):
        self.csv_path, self.png_path = Path(out) / "metrics.csv", Path(out) / "curves.png"
        self.log_every, self.batch_size = log_every, batch_size
        self._truncate(step)
        new = not self.csv_path.exists()
        self._fh = self.csv_path.open("a", newline="")
        self._writer = csv.DictWriter(self._fh, CSV_FIELDS)
        if new:
            self._writer.writeheader()
        self._reset_window()

    def _truncate(self, step: int) -> None:
        if not self.csv_path.exists():
            return
        rows = [r for r in csv.DictReader(self.csv_path.open()) if int(r["step"]) <= step]
        with self.csv_path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def _reset_window(self) -> None:
        self._window = {"loss": 0.0, "separation": 0.0, "weight_mae": 0.0, "n": 0,
                        "t": time.perf_counter()}

    def add_train(self, step: int, epoch: int, seconds: float, lr: float, parts: dict[str, float]) -> None:
        """One step's ``loss``, ``separation`` and ``weight_mae``; a row every ``log_every`` steps."""
        win = self._window
        for key in ("loss", "separation", "weight_mae"):
            win[key] += parts[key]
        win["n"] += 1
        if step % self.log_every:
            return
        n, dt = win["n"], time.perf_counter() - win["t"]
        self._writer.writerow({"step": step, "kind": "train", "epoch": epoch,
                               "seconds": round(seconds, 2), "lr": lr,
                               "loss": win["loss"] / n, "separation": win["separation"] / n,
                               "weight_mae": win["weight_mae"] / n,
                               "samples_per_s": round(n * self.batch_size / max(dt, 1e-9), 2)})
        self._fh.flush()
        self._reset_window()

    def add_val(self, step: int, epoch: int, seconds: float, lr: float, metrics: dict[str, float]) -> None:
        self._writer.writerow({"step": step, "kind": "val", "epoch": epoch,
                               "seconds": round(seconds, 2), "lr": lr,
                               **{k: metrics[k] for k in VAL_FIELDS}})
        self._fh.flush()

    def write_curves(self) -> None:
        write_curves(self.csv_path, self.png_path)

    def close(self) -> None:
        self._fh.close()
