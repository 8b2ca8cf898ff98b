"""``kdeconv train``: the training loop, checkpoints, resume, early stopping and logs.

Run folder: ``last.pt`` (every evaluation, with optimiser/schedule/RNG state for ``--resume``),
``best.pt`` (best validation loss), ``metrics.csv``, ``curves.png``, ``config.yaml`` and, when the
run ends, ``summary.json``. Checkpoints are written to a temp file and renamed (never torn).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from kdeconv.config.train import BUDGET_KEYS, TrainConfig
from kdeconv.errors import InputError
from kdeconv.model.checkpoint import (build_model, model_from_checkpoint, read_checkpoint,
                                      resolve_device, save_checkpoint)
from kdeconv.model.precision import precision_name, resolve_precision
from kdeconv.model.precision import autocast as precision_autocast
from kdeconv.train.data import Batch, TrainStream, load_calibration, load_validation, open_sources
from kdeconv.train.loss import ncc, order_by_truth, pit_loss

__all__ = ["WarmupCosine", "train", "evaluate_batches", "write_curves", "recalibrate_batchnorm"]

CSV_FIELDS = ["step", "kind", "epoch", "seconds", "lr", "loss", "separation", "weight_mae",
              "ncc_a", "ncc_b", "ncc_median", "samples_per_s"]


class WarmupCosine:
    """Linear warm-up, then cosine to ``lr * min_ratio`` over the run's progress in [0, 1].

    Progress is the larger of steps/max_steps and seconds/max_seconds, so a time budget still
    ends with a low learning rate. Its state is just what it was last set to.
    """

    def __init__(self, optimizer, lr: float, warmup: int, min_ratio: float):
        self.optimizer, self.lr, self.warmup, self.min_ratio = optimizer, lr, warmup, min_ratio
        self.last_lr = 0.0
        self.last_progress = 0.0

    def set(self, step: int, progress: float) -> float:
        progress = min(1.0, max(0.0, progress))
        cos = self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        lr = self.lr * cos * min(1.0, (step + 1) / max(1, self.warmup))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_lr, self.last_progress = lr, progress
        return lr

    def state_dict(self) -> dict:
        return {"last_lr": self.last_lr, "last_progress": self.last_progress}

    def load_state_dict(self, state: dict) -> None:
        self.last_lr = float(state["last_lr"])
        self.last_progress = float(state["last_progress"])


def _to_tensors(batch: Batch, device: torch.device):
    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x))[:, None].to(
            device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return t(batch.c), t(batch.a), t(batch.b), torch.from_numpy(batch.w_a).to(device)


def recalibrate_batchnorm(model, batches: list[Batch], batch_size: int, device: torch.device) -> None:
    """Recompute BatchNorm running statistics for the current weights (equal-weight mean over
    ``batches``, one per store, so every pattern size counts the same).

    Running statistics lag behind weights that still move fast, and batches of one size come in
    runs; recomputing them before each evaluation and checkpoint makes eval-mode outputs (and
    the saved model) match what training sees.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not batches:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for full in batches:
            for s in range(0, len(full.c), batch_size):
                sl = slice(s, s + batch_size)
                c, _, _, _ = _to_tensors(Batch(full.c[sl], full.a[sl], full.b[sl], full.w_a[sl],
                                               full.masked[sl]), device)
                model(c)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def evaluate_batches(model, batches: list[Batch], cfg: TrainConfig, device: torch.device,
                     autocast) -> dict[str, float]:
    """Validation loss and median NCC of A and B (prediction matched to truth), weight MAE."""
    model.eval()
    losses, w_errs, ncc_a, ncc_b, sizes = [], [], [], [], []
    with torch.inference_mode():
        for full in batches:
            for s in range(0, len(full.c), cfg.val_batch_size):
                sl = slice(s, s + cfg.val_batch_size)
                part = Batch(full.c[sl], full.a[sl], full.b[sl], full.w_a[sl], full.masked[sl])
                c, a, b, w = _to_tensors(part, device)
                with autocast():
                    pa, pb, pw = model(c)
                pa, pb, pw = pa.float(), pb.float(), pw.float()
                loss, parts = pit_loss(pa, pb, pw, a, b, w, c, **cfg.loss.model_dump())
                losses.append(float(loss) * len(c))
                w_errs.append(float(parts["weight_mae"]) * len(c))
                sizes.append(len(c))
                oa, ob, _ = order_by_truth(pa, pb, a, b)
                ncc_a.append(ncc(oa, a).cpu().numpy())
                ncc_b.append(ncc(ob, b).cpu().numpy())
    model.train()
    n = max(1, sum(sizes))
    na, nb = np.concatenate(ncc_a), np.concatenate(ncc_b)
    return {"loss": sum(losses) / n, "weight_mae": sum(w_errs) / n,
            "ncc_a": float(np.median(na)), "ncc_b": float(np.median(nb)),
            "ncc_median": float(np.median(np.concatenate([na, nb])))}


def write_curves(csv_path: Path, png_path: Path) -> None:
    """Training curves from metrics.csv: loss (train, val) and validation NCC vs step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    tr = [r for r in rows if r["kind"] == "train"]
    va = [r for r in rows if r["kind"] == "val"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
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
    plt.close(fig)
    os.replace(tmp, png_path)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.asarray(state["numpy"], dtype=np.uint32),
                         state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def _resume_config(ckpt: dict, cfg_path, overrides: dict) -> TrainConfig:
    stored = ckpt.get("train_config")
    if not stored:
        raise InputError("last.pt holds no training config; it cannot be resumed")
    cfg = TrainConfig.model_validate(stored)
    if cfg_path is not None:
        from kdeconv.config import load_config

        given = load_config(TrainConfig, cfg_path)
        a = {k: v for k, v in given.model_dump(mode="json").items() if k not in BUDGET_KEYS}
        b = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in BUDGET_KEYS}
        diff = sorted(k for k in a if a[k] != b.get(k))
        if diff:
            raise InputError(f"--config differs from the run being resumed in: {', '.join(diff)} "
                             "(start a new run with --overwrite or another --out)")
        overrides = {**{k: getattr(given, k) for k in BUDGET_KEYS}, **overrides}
    data = cfg.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.model_validate(data)


def _truncate_csv(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a crash after the last checkpoint) before appending."""
    if not path.exists():
        return
    rows = [r for r in csv.DictReader(path.open()) if int(r["step"]) <= step]
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)


def _progress(total: int, initial: int):
    show = sys.stderr.isatty() or os.environ.get("KDECONV_PROGRESS") == "1"
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def train(config_path: str | Path | None, data: list[str], out: str | Path, *, resume: bool = False,
          overwrite: bool = False, device: str | None = None, precision: str | None = None,
          max_steps: int | None = None,
          max_minutes: float | None = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train (or resume) a run in ``out``; returns the summary dict (also written as summary.json)."""
    out = Path(out)
    overrides = {"device": device, "precision": precision, "max_steps": max_steps,
                 "max_minutes": max_minutes}
    ckpt = None
    if resume:
        last = out / "last.pt"
        if not last.exists():
            raise InputError(f"nothing to resume: {last} does not exist")
        ckpt = read_checkpoint(last)
        if "training_state" not in ckpt:
            raise InputError(f"{last} holds no training state; it cannot be resumed")
        cfg = _resume_config(ckpt, config_path, overrides)
        if not data:
            data = [d["path"] for d in (ckpt.get("data") or {}).get("stores", [])]
    else:
        from kdeconv.config import load_config

        if config_path is None:
            raise InputError("--config is required (except with --resume)")
        cfg = load_config(TrainConfig, config_path, **overrides)
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise InputError(f"run folder already exists: {out} (use --resume to continue it, "
                             "or --overwrite to replace it)")
        if not out.parent.exists():
            raise InputError(f"output folder does not exist: {out.parent}")
    dev = resolve_device(cfg.device)
    norm = cfg.normalization.model_dump(mode="json")
    sources = open_sources(data, cfg.val_fraction, cfg.val_max)
    if ckpt is not None:
        stored = [(d["path"], d["n"], tuple(d["shape"])) for d in ckpt["data"]["stores"]]
        now = [(str(s.path), s.n, s.shape) for s in sources]
        if [x[1:] for x in stored] != [x[1:] for x in now]:
            raise InputError("--data differs from the run being resumed (stores, sizes or "
                             "pattern shapes); resume needs the same data")
    elif out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    model = (model_from_checkpoint(ckpt, out / "last.pt") if ckpt is not None
             else build_model(cfg.model)).to(dev).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = WarmupCosine(optimizer, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_dtype = resolve_precision(cfg.precision, dev)

    def autocast():
        return precision_autocast(dev, amp_dtype)
    # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range
    scaler = torch.amp.GradScaler(dev.type, enabled=amp_dtype == torch.float16)

    state = {"step": 0, "epoch": 0, "pass": 0, "pass_offset": 0, "seconds": 0.0,
             "best_val": None, "best_step": None, "bad_evals": 0}
    if ckpt is not None:
        ts = ckpt["training_state"]
        try:
            optimizer.load_state_dict(ts["optimizer"])
            schedule.load_state_dict(ts["schedule"])
            scaler.load_state_dict(ts["scaler"])
            _set_rng_state(ts["rng"])
            state.update({k: ts[k] for k in state})
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            raise InputError(f"{out / 'last.pt'} has unusable training state "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:100]})") from None
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    stream = TrainStream(sources, cfg.batch_size, cfg.seed, norm, cfg.flips)
    steps_per_epoch = cfg.steps_per_epoch or stream.batches_per_pass
    val = load_validation(sources, norm)
    calibration = load_calibration(sources, norm)
    data_desc = {"stores": [s.describe() for s in sources],
                 "n_train": sum(s.n_train for s in sources), "n_val": sum(s.n_val for s in sources)}
    csv_path, png_path = out / "metrics.csv", out / "curves.png"
    _truncate_csv(csv_path, state["step"])
    new_csv = not csv_path.exists()
    csv_fh = csv_path.open("a", newline="")
    writer = csv.DictWriter(csv_fh, CSV_FIELDS)
    if new_csv:
        writer.writeheader()

    max_seconds = cfg.max_minutes * 60 if cfg.max_minutes else None
    echo(f"train: {data_desc['n_train']} train / {data_desc['n_val']} val pairs from "
         f"{len(sources)} store(s), {sum(p.numel() for p in model.parameters()):,} parameters, "
         f"device {dev} ({precision_name(amp_dtype)}), batch {cfg.batch_size}, "
         f"{steps_per_epoch} steps/epoch, "
         f"from step {state['step']} to at most {cfg.max_steps}"
         + (f" or {cfg.max_minutes:g} min" if max_seconds else ""))

    def progress_fraction() -> float:
        frac = state["step"] / cfg.max_steps
        if max_seconds:
            frac = max(frac, state["seconds"] / max_seconds)
        return frac

    def save(kind: str, metrics: dict) -> None:
        training_state = {
            **state, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict(), "rng": _rng_state(),
        }
        save_checkpoint(out / kind, model, normalization=norm, train_config=cfg,
                        metrics=metrics, data=data_desc,
                        training_state=training_state if kind == "last.pt" else None)

    stop_reason = None
    last_metrics: dict = {}
    bar = _progress(cfg.max_steps, state["step"])
    run_start = time.perf_counter()
    start_step = state["step"]
    window = {"loss": 0.0, "separation": 0.0, "weight_mae": 0.0, "n": 0, "t": time.perf_counter()}
    model.train()
    batches = stream.batches(state["pass"], state["pass_offset"])
    tick = time.perf_counter()

    def clock() -> None:
        # wall time of the run (steps, reads and evaluations), kept across resumes
        nonlocal tick
        now = time.perf_counter()
        state["seconds"] += now - tick
        tick = now
    try:
        while stop_reason is None:
            if state["step"] >= cfg.max_steps:
                stop_reason = "max_steps"
                break
            if max_seconds and state["seconds"] >= max_seconds:
                stop_reason = "max_minutes"
                break
            pass_, index, batch = next(batches)
            c, a, b, w = _to_tensors(batch, dev)
            lr = schedule.set(state["step"], progress_fraction())
            with autocast():
                pa, pb, pw = model(c)
            loss, parts = pit_loss(pa.float(), pb.float(), pw.float(), a, b, w, c,
                                   **cfg.loss.model_dump())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if not torch.isfinite(loss):
                raise RuntimeError(f"training diverged at step {state['step']} (loss {float(loss)})")
            state["step"] += 1
            state["pass"], state["pass_offset"] = pass_, index + 1
            clock()
            loss = loss.detach()
            window["loss"] += float(loss)
            window["separation"] += float(parts["separation"])
            window["weight_mae"] += float(parts["weight_mae"])
            window["n"] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{lr:.2e}", refresh=False)
            if state["step"] % cfg.log_every == 0:
                n = window["n"]
                dt = time.perf_counter() - window["t"]
                writer.writerow({"step": state["step"], "kind": "train", "epoch": state["epoch"],
                                 "seconds": round(state["seconds"], 2), "lr": lr,
                                 "loss": window["loss"] / n, "separation": window["separation"] / n,
                                 "weight_mae": window["weight_mae"] / n,
                                 "samples_per_s": round(n * cfg.batch_size / max(dt, 1e-9), 2)})
                csv_fh.flush()
                window = {"loss": 0.0, "separation": 0.0, "weight_mae": 0.0, "n": 0,
                          "t": time.perf_counter()}
            end_of_budget = (state["step"] >= cfg.max_steps
                             or (max_seconds and state["seconds"] >= max_seconds))
            if state["step"] % steps_per_epoch == 0 or end_of_budget:
                state["epoch"] += state["step"] % steps_per_epoch == 0
                recalibrate_batchnorm(model, calibration, cfg.batch_size, dev)
                last_metrics = evaluate_batches(model, val, cfg, dev, autocast)
                clock()
                improved = (state["best_val"] is None
                            or last_metrics["loss"] < state["best_val"] - cfg.min_delta)
                if improved:
                    state["best_val"], state["best_step"], state["bad_evals"] = \
                        last_metrics["loss"], state["step"], 0
                else:
                    state["bad_evals"] += 1
                writer.writerow({"step": state["step"], "kind": "val", "epoch": state["epoch"],
                                 "seconds": round(state["seconds"], 2), "lr": lr,
                                 **{k: last_metrics[k] for k in
                                    ("loss", "weight_mae", "ncc_a", "ncc_b", "ncc_median")}})
                csv_fh.flush()
                metrics = {**{f"val_{k}": v for k, v in last_metrics.items()},
                           "step": state["step"], "epoch": state["epoch"]}
                if improved:
                    save("best.pt", metrics)
                save("last.pt", metrics)
                write_curves(csv_path, png_path)
                line = (f"epoch {state['epoch']} step {state['step']}: val loss "
                        f"{last_metrics['loss']:.4f}, NCC A {last_metrics['ncc_a']:.3f} "
                        f"B {last_metrics['ncc_b']:.3f}, weight MAE {last_metrics['weight_mae']:.3f}"
                        f"{' (best)' if improved else ''}, lr {lr:.2e}, {state['seconds'] / 60:.1f} min")
                (bar.write(line, file=sys.stderr) if bar is not None else echo(line))
                if cfg.early_stop_patience and state["bad_evals"] >= cfg.early_stop_patience:
                    stop_reason = "early_stopping"
    finally:
        if bar is not None:
            bar.close()
        csv_fh.close()
        batches.close()

    elapsed = time.perf_counter() - run_start
    done = state["step"] - start_step
    summary = {"stop_reason": stop_reason, "step": state["step"], "epoch": state["epoch"],
               "best_step": state["best_step"], "best_val_loss": state["best_val"],
               "last_val": last_metrics, "train_seconds": round(state["seconds"], 1),
               "steps_this_run": done, "samples_per_s": round(done * cfg.batch_size / max(elapsed, 1e-9), 2),
               "device": str(dev), "precision": precision_name(amp_dtype), "data": data_desc}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    from kdeconv.cluster import summary_line

    echo(summary_line(f"train ({stop_reason}; best {out / 'best.pt'})", done, elapsed, unit="steps")
         + f", {summary['samples_per_s']:.1f} samples/s")
    return summary
