"""``kdeconv train``: the trainer and the stage entry point ``run``.

Run folder: ``last.pt`` (every evaluation, with optimiser/schedule/RNG state for resuming),
``best.pt`` (best validation loss), ``metrics.csv``, ``curves.png``, ``config.yaml`` and, when the
run ends, ``summary.json``. Checkpoints are written to a temp file and renamed (never torn), and
never hold non-finite weights. With ``ema_decay`` both hold the weights' moving average (what was
validated); last.pt keeps the raw weights in its training state for resuming.

``Trainer`` is the run in pieces: construction sets it up (seeds, model, optimiser, data), then
``start_from`` (warm start from a checkpoint's weights) or ``resume`` (a run's last.pt), ``step``
(one optimisation step), ``evaluate_and_checkpoint`` and ``fit`` (the loop to the budget).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kdeconv.config.model import HEAD_MODULES
from kdeconv.config.train import TrainConfig
from kdeconv.errors import InputError
from kdeconv.model.checkpoint import build_model, read_checkpoint, resolve_device, save_checkpoint
from kdeconv.model.precision import autocast as precision_autocast
from kdeconv.model.precision import precision_name, resolve_precision
from kdeconv.train.data import (
    Batch,
    PairsSource,
    TrainStream,
    load_calibration,
    load_validation,
    open_sources,
    open_validation_sources,
)
from kdeconv.train.loss import pit_loss
from kdeconv.train.metrics_log import MetricsLog, write_curves
from kdeconv.train.run_config import coerce_config, resolve_init, resume_config
from kdeconv.train.schedule import WarmupCosine
from kdeconv.train.validation import evaluate_batches, non_finite_tensors, recalibrate_batchnorm, to_tensors

__all__ = ["run", "TrainResult", "Trainer", "TrainingDiverged", "WarmupCosine", "evaluate_batches",
           "recalibrate_batchnorm", "write_curves"]

PathLike = str | Path


class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or inf; nothing non-finite was saved."""


@dataclass
class TrainResult:
    """What ``run`` returns (``summary.json`` in the run folder holds more)."""

    out: Path
    best: Path                    # best.pt: the best validation loss
    last: Path                    # last.pt: the last evaluation, resumable
    steps: int                    # total steps of the run, across resumes
    seconds: float                # training wall time, across resumes
    stop_reason: str              # max_steps, max_minutes or early_stopping
    val_metrics: dict[str, float]  # last validation: loss, weight_mae, ncc_a, ncc_b, ncc_median
    best_step: int | None
    best_val_loss: float | None


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.asarray(state["numpy"], dtype=np.uint32),
                         state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def _under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _first_line(err: Exception) -> str:
    lines = [s.strip() for s in str(err).strip().splitlines() if s.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__)[:120]


class Trainer:
    """One training run in ``out`` (see the module docstring for its pieces).

    ``sources`` are the training stores; ``val_sources`` the validation ones (the held-out
    tails of ``sources``, or separate stores used whole).
    """

    def __init__(self, cfg: TrainConfig, sources: list[PairsSource], val_sources: list[PairsSource],
                 out: PathLike, *, echo: Callable[[str], None] = print):
        self.cfg, self.out, self.echo = cfg, Path(out), echo
        self.sources, self.val_sources = sources, val_sources
        self.device = resolve_device(cfg.device)
        self.normalization = cfg.normalization.model_dump(mode="json")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.model = build_model(cfg.model).to(self.device).to(memory_format=torch.channels_last)
        self._freeze()
        # the averaged weights are what is validated and saved; the raw ones what is trained
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay),
                                  use_buffers=False) if cfg.ema_decay else None)
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        self.schedule = WarmupCosine(self.optimizer, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.amp_dtype = resolve_precision(cfg.precision, self.device, training=True)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        # the counters saved in last.pt's training_state
        self.state: dict[str, Any] = {"step": 0, "epoch": 0, "pass": 0, "pass_offset": 0,
                                      "seconds": 0.0, "best_val": None, "best_step": None,
                                      "bad_evals": 0}
        self.last_saved_step: int | None = None
        self.last_metrics: dict[str, float] = {}  # the latest validation

        self.stream = TrainStream(sources, cfg.batch_size, cfg.seed, self.normalization, cfg.flips)
        self.steps_per_epoch = cfg.steps_per_epoch or self.stream.batches_per_pass
        self.val = load_validation(val_sources, self.normalization)
        self.calibration = load_calibration(sources, self.normalization)
        self.data_desc: dict[str, Any] = {
            "stores": [s.describe() for s in sources],
            "n_train": sum(s.n_train for s in sources),
            "n_val": sum(s.n_val for s in val_sources)}
        if cfg.val_data:
            self.data_desc["val_stores"] = [s.describe() for s in val_sources]
        self.max_seconds = cfg.max_minutes * 60 if cfg.max_minutes else None
        self._tick = time.perf_counter()

    # -- set-up ---------------------------------------------------------------------------------
    def _freeze(self) -> None:
        for prefix in self.cfg.freeze:
            params = [p for n, p in self.model.named_parameters() if _under(n, [prefix])]
            if not params:
                raise InputError(f"freeze: the model has no parameters under {prefix!r}")
            for p in params:
                p.requires_grad_(False)

    def _param_groups(self) -> list[dict[str, Any]]:
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        if not named:
            raise InputError("freeze leaves no parameters to train")
        if self.cfg.head_lr_scale == 1:
            return [{"params": [p for _, p in named]}]
        body = [p for n, p in named if not _under(n, HEAD_MODULES)]
        head = [p for n, p in named if _under(n, HEAD_MODULES)]
        groups = [{"params": body}] if body else []
        return groups + ([{"params": head, "lr_scale": self.cfg.head_lr_scale}] if head else [])

    @property
    def saved_model(self):
        """The weights validated and written to best.pt and last.pt (the average, when kept)."""
        return self.model if self.ema is None else self.ema.module

    def _load_weights(self, ckpt: dict[str, Any], path: PathLike, state_dict=None) -> None:
        try:
            self.model.load_state_dict(ckpt["state_dict"] if state_dict is None else state_dict,
                                       strict=True)
        except (RuntimeError, KeyError, TypeError) as err:
            raise InputError(f"checkpoint {path} does not match the model config "
                             f"({_first_line(err)})") from None

    def start_from(self, ckpt: dict[str, Any], path: PathLike = "init_checkpoint") -> None:
        """Warm start: the weights (and BatchNorm statistics) of ``ckpt``; the optimiser stays fresh."""
        self._load_weights(ckpt, path)
        if self.ema is not None:
            self.ema.module.load_state_dict(self.model.state_dict())

    def resume(self, ckpt: dict[str, Any], path: PathLike = "last.pt") -> None:
        """Continue the run saved in ``ckpt``: weights, optimiser, schedule, RNG and counters."""
        ts = ckpt["training_state"]  # resume_config already refused a different ema_decay
        self._load_weights(ckpt, path, ts.get("raw_state_dict"))
        try:
            if self.ema is not None:  # last.pt's weights are the average
                self.ema.module.load_state_dict(ckpt["state_dict"], strict=True)
                self.ema.n_averaged.fill_(int(ts["ema_updates"]))
            self.optimizer.load_state_dict(ts["optimizer"])
            self.schedule.load_state_dict(ts["schedule"])
            self.scaler.load_state_dict(ts["scaler"])
            _set_rng_state(ts["rng"])
            self.state.update({k: ts[k] for k in self.state})
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            raise InputError(f"{path} has unusable training state "
                             f"({type(err).__name__}: {str(err).splitlines()[0][:100]})") from None
        self.last_saved_step = self.state["step"]
        self.last_metrics = {k[4:]: v for k, v in (ckpt.get("metrics") or {}).items()
                             if k.startswith("val_")}

    def describe(self) -> str:
        cfg, s = self.cfg, self.state
        n_params = sum(p.numel() for p in self.model.parameters())
        n_trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return (f"train: {self.data_desc['n_train']} train / {self.data_desc['n_val']} val pairs from "
                f"{len(self.sources)} store(s)"
                + (f" + {len(self.val_sources)} validation store(s)" if "val_stores" in self.data_desc
                   else "")
                + f", {n_params:,} parameters"
                + (f" ({n_trainable:,} trained)" if n_trainable != n_params else "")
                + f", device {self.device} ({precision_name(self.amp_dtype)}), batch {cfg.batch_size}, "
                f"{self.steps_per_epoch} steps/epoch, "
                f"from step {s['step']} to at most {cfg.max_steps}"
                + (f" or {cfg.max_minutes:g} min" if self.max_seconds else ""))

    # -- one step -------------------------------------------------------------------------------
    def autocast(self):
        return precision_autocast(self.device, self.amp_dtype)

    def progress_fraction(self) -> float:
        frac = self.state["step"] / self.cfg.max_steps
        if self.max_seconds:
            frac = max(frac, self.state["seconds"] / self.max_seconds)
        return frac

    def step(self, batch: Batch) -> tuple[float, dict[str, float]]:
        """One optimisation step on ``batch``: returns (learning rate, loss parts as floats)."""
        cfg, model = self.cfg, self.model
        c, a, b, w = to_tensors(batch, self.device)
        lr = self.schedule.set(self.state["step"], self.progress_fraction())
        with self.autocast():
            pa, pb, pw = model(c)
        loss, parts = pit_loss(pa.float(), pb.float(), pw.float(), a, b, w, c, **cfg.loss.model_dump())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(model)
        if not torch.isfinite(loss):
            raise self._diverged(f"training diverged at step {self.state['step']} "
                                 f"(loss {float(loss.detach())})")
        self.state["step"] += 1
        loss = loss.detach()
        return lr, {"loss": float(loss), "separation": float(parts["separation"]),
                    "weight_mae": float(parts["weight_mae"])}

    def _diverged(self, what: str) -> TrainingDiverged:
        last = self.out / "last.pt"
        where = (f"or resume from {last} (step {self.last_saved_step}, the last good weights; "
                 "e.g. with --precision fp32)" if self.last_saved_step is not None
                 else "(no checkpoint was written yet)")
        return TrainingDiverged(f"{what}: lower lr (now {self.cfg.lr:g}) or raise warmup_steps and "
                                f"start a new run, {where}")

    def clock(self) -> None:
        """Add the wall time since the last call to the run's seconds (kept across resumes)."""
        now = time.perf_counter()
        self.state["seconds"] += now - self._tick
        self._tick = now

    # -- evaluate and checkpoint ----------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Recalibrate BatchNorm on training pairs, then the validation metrics."""
        recalibrate_batchnorm(self.saved_model, self.calibration, self.cfg.batch_size, self.device)
        return evaluate_batches(self.saved_model, self.val, self.cfg, self.device, self.autocast)

    def check_finite(self) -> None:
        """Raise TrainingDiverged if any weight or BatchNorm statistic is NaN or inf."""
        bad = non_finite_tensors(self.model) + (non_finite_tensors(self.ema.module)
                                                if self.ema is not None else [])
        if bad:
            raise self._diverged(f"non-finite weights at step {self.state['step']} in "
                                 f"{', '.join(bad[:3])}{' …' if len(bad) > 3 else ''} (not saved)")

    def save(self, name: str, metrics: dict[str, Any]) -> Path:
        """Write ``out/name`` (last.pt with the training state); refuses non-finite weights."""
        self.check_finite()
        return self._write(name, metrics)

    def _write(self, name: str, metrics: dict[str, Any]) -> Path:
        training_state = None
        if name == "last.pt":
            training_state = {**self.state, "optimizer": self.optimizer.state_dict(),
                              "schedule": self.schedule.state_dict(),
                              "scaler": self.scaler.state_dict(), "rng": _rng_state()}
            if self.ema is not None:
                training_state.update(raw_state_dict=self.model.state_dict(),
                                      ema_updates=int(self.ema.n_averaged))
        path = save_checkpoint(self.out / name, self.saved_model, normalization=self.normalization,
                               train_config=self.cfg, metrics=metrics, data=self.data_desc,
                               training_state=training_state)
        if name == "last.pt":
            self.last_saved_step = self.state["step"]
        return path

    def evaluate_and_checkpoint(self, lr: float, log: MetricsLog) -> tuple[dict[str, float], bool]:
        """Validate, log, write best.pt (when improved) and last.pt, redraw the curves.

        Returns the validation metrics and whether they improved on the best so far.
        """
        s, cfg = self.state, self.cfg
        s["epoch"] += s["step"] % self.steps_per_epoch == 0
        metrics = self.evaluate()
        self.clock()
        self.check_finite()  # before anything is logged or saved
        improved = s["best_val"] is None or metrics["loss"] < s["best_val"] - cfg.min_delta
        if improved:
            s["best_val"], s["best_step"], s["bad_evals"] = metrics["loss"], s["step"], 0
        else:
            s["bad_evals"] += 1
        log.add_val(s["step"], s["epoch"], s["seconds"], lr, metrics)
        saved = {**{f"val_{k}": v for k, v in metrics.items()}, "step": s["step"], "epoch": s["epoch"]}
        if improved:
            self._write("best.pt", saved)
        self._write("last.pt", saved)
        log.write_curves()
        self.last_metrics = metrics
        return metrics, improved

    # -- the loop -------------------------------------------------------------------------------
    def budget_spent(self) -> str | None:
        if self.state["step"] >= self.cfg.max_steps:
            return "max_steps"
        if self.max_seconds and self.state["seconds"] >= self.max_seconds:
            return "max_minutes"
        return None

    def fit(self, progress: bool = True) -> tuple[str, dict[str, float]]:
        """Train until the budget is spent or early stopping; returns (stop reason, latest validation)."""
        cfg, s = self.cfg, self.state
        log = MetricsLog(self.out, s["step"], cfg.log_every, cfg.batch_size)
        bar = _progress_bar(cfg.max_steps, s["step"]) if progress else None
        stop_reason = None
        self.model.train()
        batches = self.stream.batches(s["pass"], s["pass_offset"])
        self._tick = time.perf_counter()
        try:
            while stop_reason is None:
                stop_reason = self.budget_spent()
                if stop_reason:
                    break
                pass_, index, batch = next(batches)
                lr, parts = self.step(batch)
                s["pass"], s["pass_offset"] = pass_, index + 1
                self.clock()
                log.add_train(s["step"], s["epoch"], s["seconds"], lr, parts)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
                if s["step"] % self.steps_per_epoch and not self.budget_spent():
                    continue
                metrics, improved = self.evaluate_and_checkpoint(lr, log)
                line = (f"epoch {s['epoch']} step {s['step']}: val loss "
                        f"{metrics['loss']:.4f}, NCC A {metrics['ncc_a']:.3f} "
                        f"B {metrics['ncc_b']:.3f}, weight MAE {metrics['weight_mae']:.3f}"
                        f"{' (best)' if improved else ''}, lr {lr:.2e}, {s['seconds'] / 60:.1f} min")
                (bar.write(line, file=sys.stderr) if bar is not None else self.echo(line))
                if cfg.early_stop_patience and s["bad_evals"] >= cfg.early_stop_patience:
                    stop_reason = "early_stopping"
        finally:
            if bar is not None:
                bar.close()
            log.close()
            batches.close()
        return stop_reason, self.last_metrics


def _progress_bar(total: int, initial: int):
    if not (sys.stderr.isatty() or os.environ.get("KDECONV_PROGRESS") == "1"):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)


def _read_last(out: Path) -> dict[str, Any]:
    last = out / "last.pt"
    if not last.exists():
        raise InputError(f"nothing to resume: {last} does not exist")
    ckpt = read_checkpoint(last)
    if "training_state" not in ckpt:
        raise InputError(f"{last} holds no training state; it cannot be resumed")
    return ckpt


def _check_same_data(ckpt: dict[str, Any], sources: list[PairsSource],
                     separate_val: list[PairsSource]) -> None:
    """The stores (count, sizes, shapes) must be those of the run being resumed."""
    stored = ckpt.get("data") or {}
    for key, now in (("stores", sources), ("val_stores", separate_val)):
        before = [(d["n"], tuple(d["shape"])) for d in stored.get(key, [])]
        if before != [(s.n, s.shape) for s in now]:
            which = "--data" if key == "stores" else "val_data"
            raise InputError(f"{which} differs from the run being resumed (stores, sizes or "
                             "pattern shapes); resume needs the same data")


def _set_up(config, data: list[str], out: Path, resume: bool, overwrite: bool,
            echo: Callable[[str], None]) -> Trainer:
    """Everything before the first step: the config, the data, the model (fresh, warm-started or
    resumed) and the run folder, which is created (or replaced) only once all checks passed."""
    ckpt = init = None
    if resume:
        ckpt = _read_last(out)
        cfg = resume_config(ckpt, None if config is None else coerce_config(config))
        if not data:
            data = [d["path"] for d in (ckpt.get("data") or {}).get("stores", [])]
    else:
        if config is None:
            raise InputError("a training config is required (--config), except when resuming")
        cfg = coerce_config(config)
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise InputError(f"run folder already exists: {out} (use --resume to continue it, "
                             "or --overwrite to replace it)")
        if not out.parent.exists():
            raise InputError(f"output folder does not exist: {out.parent}")
    # a bad device or precision: say so now
    resolve_precision(cfg.precision, resolve_device(cfg.device), training=True)
    if cfg.val_data:
        both = {Path(p).resolve() for p in data} & {Path(p).resolve() for p in cfg.val_data}
        if both:
            raise InputError(f"{sorted(both)[0]} is both training data and val_data")
        sources = open_sources(data, cfg.val_fraction, cfg.val_max, hold_out=False)
        val_sources = open_validation_sources(cfg.val_data)
    else:
        sources = open_sources(data, cfg.val_fraction, cfg.val_max)
        val_sources = sources
    if ckpt is not None:
        _check_same_data(ckpt, sources, val_sources if cfg.val_data else [])
    elif cfg.init_checkpoint:
        cfg, init = resolve_init(cfg)
    trainer = Trainer(cfg, sources, val_sources, out, echo=echo)  # writes nothing yet
    if ckpt is not None:
        trainer.resume(ckpt, out / "last.pt")
    elif init is not None:
        trainer.start_from(init, cfg.init_checkpoint)
    if ckpt is None and out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if init is not None:
        echo(f"train: starting from the weights of {cfg.init_checkpoint} "
             f"(sha256 {cfg.init_checkpoint_sha256[:12]}…)")
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return trainer


def run(config: TrainConfig | dict[str, Any] | PathLike | None, *, data: Sequence[PathLike] = (),
        out: PathLike, resume: bool = False, overwrite: bool = False, client=None,
        progress: bool = True, echo: Callable[[str], None] = print) -> TrainResult:
    """Train a model into the run folder ``out`` (or continue it with ``resume``).

    Parameters
    ----------
    config
        TrainConfig, dict or YAML path (validated into a TrainConfig). With ``resume`` it may be
        None (the run's own) or set only some keys: budget keys (BUDGET_KEYS) override the run's,
        every other key given must equal it.
    data
        Pairs stores to train on. With ``resume`` they default to the run's own.
    out
        Run folder; a new run refuses an existing non-empty one unless ``overwrite``.
    client
        Accepted for the common stage signature; training runs in this process.
    progress
        Progress bar on stderr when it is a terminal (or ``KDECONV_PROGRESS=1``).
    echo
        Receives the start line, one line per evaluation and the summary line.
    """
    out = Path(out)
    trainer = _set_up(config, [str(d) for d in data], out, resume, overwrite, echo)
    cfg, s = trainer.cfg, trainer.state
    echo(trainer.describe())
    run_start = time.perf_counter()
    start_step = s["step"]
    stop_reason, last_metrics = trainer.fit(progress=progress)
    elapsed = time.perf_counter() - run_start
    done = s["step"] - start_step
    summary = {"stop_reason": stop_reason, "step": s["step"], "epoch": s["epoch"],
               "best_step": s["best_step"], "best_val_loss": s["best_val"],
               "last_val": last_metrics, "train_seconds": round(s["seconds"], 1),
               "steps_this_run": done,
               "samples_per_s": round(done * cfg.batch_size / max(elapsed, 1e-9), 2),
               "device": str(trainer.device), "precision": precision_name(trainer.amp_dtype),
               "data": trainer.data_desc}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    from kdeconv.cluster import summary_line

    echo(summary_line(f"train ({stop_reason}; best {out / 'best.pt'})", done, elapsed, unit="steps")
         + f", {summary['samples_per_s']:.1f} samples/s")
    return TrainResult(out=out, best=out / "best.pt", last=out / "last.pt", steps=s["step"],
                       seconds=round(s["seconds"], 1), stop_reason=stop_reason,
                       val_metrics=last_metrics, best_step=s["best_step"], best_val_loss=s["best_val"])
