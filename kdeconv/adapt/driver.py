"""``kdeconv adapt``: fine-tune a separation model on a map's own pure patterns.

1. Plan the model input exactly as ``separate`` will (background raw or processed, working size).
2. Pure patterns: found in the grain interiors (``find_pure``), named by the user (``--pure``), or
   given as references (``--references``: a folder, sub-folders as labels, or a map store).
3. Split the grains (not the pairs) into training and validation, so validation measures grains
   the model has not seen.
4. Pairs with ``generate``'s map source and ``pipeline: raw_mix``: the raw patterns of two grains
   summed as the detector sums them, then separate's preprocessing (deterministic on Dask).
5. Fine-tune the base with ``kdeconv.train.run`` (low learning rate, wall-time budget, early
   stopping on the held-out grains), score base and adapted model on the held-out pairs, derive
   the claim rule from them, and write ``last.pt``, ``adapt.json`` and, last, ``best.pt``.

An interrupted run keeps its folder; the same command resumes it (``kdeconv.io.resume``'s run
folders): the static background, the pure patterns (``pure.json``) and finished pair stores are
kept, and training goes on from ``train/last.pt`` with what is left of the budget.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kdeconv.config import coerce_config, validate_config
from kdeconv.config.adapt import AdaptConfig
from kdeconv.config.claim import PURE_MAX, rule_from_held_out, separating_bar
from kdeconv.errors import InputError

__all__ = ["AdaptResult", "run", "split_groups", "score_pairs"]

@dataclass
class AdaptResult:
    out: Path
    best: Path
    last: Path
    report: Path                      # adapt.json
    n_pure: int
    n_grains: int
    pairs: int
    val_pairs: int
    steps: int
    stop_reason: str | None
    before: dict                      # held-out metrics of the base model
    after: dict                       # and of the adapted one
    claim_rule: dict
    seconds: dict = field(default_factory=dict)

    @classmethod
    def from_run_folder(cls, out: str | Path, map_path: str | Path | None = None) -> AdaptResult:
        """The result of the finished run in ``out`` (its ``adapt.json``); with ``map_path``, only
        if it was adapted to that map."""
        out = Path(out)
        report = out / "adapt.json"
        if not (out / "best.pt").is_file() or not report.is_file():
            raise InputError(f"{out} holds no finished adapt run (best.pt and adapt.json)")
        p = json.loads(report.read_text())
        adapted_to = p["map"]["path"]
        if map_path is not None and Path(adapted_to) != Path(map_path).resolve():
            raise InputError(f"{out} holds a model adapted to another map ({adapted_to}); give "
                             "another run folder, or overwrite to adapt again")
        return cls(out, out / "best.pt", out / "last.pt", report, int(p["pure"]["n"]),
                   int(p["pure"]["n_grains"]), int(p["pairs"]["train"]), int(p["pairs"]["val"]),
                   int(p["fine_tune"]["steps"]), p["fine_tune"]["stop_reason"], p["held_out"]["before"],
                   p["held_out"]["after"], p["claim_rule"], p["seconds"])

    def summary(self) -> str:
        return (f"adapt: {self.n_pure} pure patterns from {self.n_grains} grains, {self.pairs} + "
                f"{self.val_pairs} pairs, {self.steps} steps in {self.seconds.get('total', 0):.0f} s; "
                f"held-out NCC B {self.before['ncc_b']:.3f} -> {self.after['ncc_b']:.3f}, weight error "
                f"{self.before['weight_error']:.3f} -> {self.after['weight_error']:.3f}; {self.best}")


# ----------------------------------------------------------------------------- kernels

def split_groups(groups: np.ndarray, val_fraction: float, seed: int,
                 labels: np.ndarray | None = None) -> np.ndarray:
    """Boolean (n,) "held out" for patterns ``groups`` (grain ids).

    Whole grains are held out, at least 2 (validation pairs need two grains) and at least 2 kept;
    with ``labels`` (e.g. the phase of each pattern) each label keeps and holds out grains of its
    own where it can. With 2 or 3 grains only, whole grains cannot be spared: a share of each
    grain's patterns is held out instead (validation then sees the training grains).
    """
    groups = np.asarray(groups)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        raise InputError(f"the pure patterns come from {len(uniq)} grain; adapt needs at least 2 "
                         "different grains to mix")
    rng = np.random.default_rng([seed, 0xADA])
    if len(uniq) < 4:
        held = np.zeros(len(groups), bool)
        for g in uniq:
            mine = np.flatnonzero(groups == g)
            if len(mine) < 2:
                raise InputError(f"{len(uniq)} grains, one of them with a single pure pattern: adapt "
                                 "needs 4 grains, or 2 patterns of each grain to validate on")
            k = max(1, int(round(val_fraction * len(mine))))
            held[rng.permutation(mine)[:k]] = True
        return held
    held_groups: list = []
    if labels is not None:
        label_of = {g: np.asarray(labels)[groups == g][0] for g in uniq}
        for label in sorted(set(label_of.values())):
            mine = np.array([g for g in uniq if label_of[g] == label])
            if len(mine) >= 3:
                k = max(1, int(round(val_fraction * len(mine))))
                held_groups.extend(rng.permutation(mine)[:k].tolist())
    if len(held_groups) < 2:
        k = max(2, int(round(val_fraction * len(uniq))))
        held_groups = rng.permutation(uniq)[:k].tolist()
    if len(uniq) - len(held_groups) < 2:
        held_groups = held_groups[: len(uniq) - 2]
    return np.isin(groups, held_groups)


def score_pairs(separator, store: str | Path, batch: int = 64
                ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Median NCC of A and B (best ordering), median weight error, the median predicted minority
    of near-pure pairs and the weight calibration by bin (``evaluate``'s) on a pairs store:
    (summary, true minority, predicted minority)."""
    import zarr

    from kdeconv.evaluate.metrics import pair_metrics, weight_calibration, weight_error
    from kdeconv.evaluate.recovery import WEIGHT_BINS
    from kdeconv.mixing import from_uint16

    group = zarr.open_group(str(store), mode="r")
    n = group["C"].shape[0]
    parts = []
    for start in range(0, n, batch):
        sl = slice(start, min(n, start + batch))
        c, a, b = (from_uint16(group[k][sl]) for k in ("C", "A", "B"))
        w = np.asarray(group["weights"][sl])
        pa, pb, pw = separator.separate(c)
        px = pair_metrics(pa, pb, a, b)
        parts.append((px["ncc_a"], px["ncc_b"], weight_error(pw, w, px["swapped"]), w, pw))
    ncc_a, ncc_b, werr, true_w, pred_w = (np.concatenate(x) for x in zip(*parts))
    true_min, pred_min = true_w.min(axis=1), pred_w.min(axis=1)
    mixed = true_min >= 0.1
    pure = true_min < PURE_MAX
    summary = {"n": int(n), "ncc_a": float(np.median(ncc_a[mixed])) if mixed.any() else None,
               "ncc_b": float(np.median(ncc_b[mixed])) if mixed.any() else None,
               "weight_error": float(np.median(werr)),
               "pure_predicted_minority_median": float(np.median(pred_min[pure])) if pure.any() else None,
               "calibration": weight_calibration(true_w, pred_w, WEIGHT_BINS, pure_below=PURE_MAX)}
    return summary, true_min, pred_min


# ----------------------------------------------------------------------------- driver

def _as_config(config) -> AdaptConfig:
    return coerce_config(AdaptConfig, config)


def _pairs_config(cfg: AdaptConfig, pool: str, indices: np.ndarray, groups: np.ndarray, n: int,
                  seed: int, model_input: dict, noise: tuple[float, float] | None = None) -> dict:
    """A generate config: raw_mix pairs of two different grains of the pool."""
    ids = np.unique(groups, return_inverse=True)[1]
    lo, hi = cfg.minority
    return {
        "seed": seed, "n": n, "chunk_size": 256, "pipeline": "raw_mix", "model_input": model_input,
        "source": {"kind": "map", "path": pool, "indices": [int(i) for i in indices],
                   "labels": [int(g) for g in ids], "cross_label": 1.0,
                   "noise": None if noise is None else list(noise)},
        "weights": {"low": 1 - hi, "high": 1 - lo, "pure_fraction": cfg.pure_fraction,
                    "pure_low": 0.97, "dominant_first": True},
        "mask": {"fraction": 0.0},
        "augment": {"realism": False, "flips": cfg.flips},
        # one window over the whole pool: any two grains can meet
        "window": max(2, len(indices)), "group_size": 1024,
    }


def _prepared_pure(gen) -> np.ndarray:
    """The listed pure patterns of ``gen``'s source, preprocessed as its pairs are (``model_input``)."""
    import zarr

    from kdeconv.generate.driver import rows_at
    from kdeconv.separate.chunk import preprocess_patterns

    spec = gen.model_input
    static = None if spec.static_background is None else np.load(spec.static_background).astype(np.float32)
    work = tuple(spec.work_shape) if spec.work_shape else None
    # read once, not through the workers' chunk cache: nothing stays held while adapt trains here
    patterns = zarr.open_group(gen.source.path, mode="r")["patterns"]
    return preprocess_patterns(rows_at(patterns, np.asarray(gen.source.indices, np.int64)),
                               spec.recipe(), static, work)


def _camera_pattern(gen, prepared: np.ndarray, grains: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """The camera's fine pattern on the grain means of ``prepared``, all of ``gen``'s pure
    patterns (training and held-out grains alike), ``generate.chunk.camera_pattern``; (None, None)
    on processed maps, whose vendor removed the static background and the camera's pattern with it."""
    from kdeconv.generate.chunk import camera_pattern, grain_means

    if gen.model_input.static_background is None:
        return None, None
    means = grain_means(prepared, grains)
    return camera_pattern(means[np.unique(grains, return_index=True)[1]])


def _grain_mean_targets(prepared: np.ndarray, grains: np.ndarray, path: Path,
                        camera: np.ndarray | None) -> Path:
    """Write the grain mean of each of the ``prepared`` pure patterns (``_prepared_pure``), less
    the ``camera`` pattern when given, to the Zarr array ``path``; returns it."""
    import zarr

    from kdeconv.generate.chunk import grain_means, less_camera_pattern

    targets = grain_means(prepared, grains)
    if camera is not None:
        targets = less_camera_pattern(targets, camera)
    zarr.save_array(str(path), targets, zarr_format=3)
    return path


def _recording_noise(pool: str, indices: np.ndarray, grains: np.ndarray,
                     recipe: dict) -> tuple[float, float] | None:
    """The map's noise line (``generate.chunk.recording_noise``) from the chosen pure patterns,
    windowed as the pairs are mixed."""
    import zarr

    from kdeconv.generate.chunk import recording_noise
    from kdeconv.generate.driver import rows_at
    from kdeconv.preprocess.mask import window_patterns

    raw = rows_at(zarr.open_group(pool, mode="r")["patterns"], np.asarray(indices, np.int64))
    return recording_noise(window_patterns(np.asarray(raw, np.float32), recipe), grains)


def _pure_from_map(cfg: AdaptConfig, map_path: Path, nav_shape, background: dict, static_bg, client,
                   progress, echo) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(flat indices, grain (segment) id per index, crystal id per index, record) of the map's pure
    patterns: segments that are one crystal (``find_pure.one_crystal_segments``) share a crystal."""
    from kdeconv.adapt.find_pure import find_pure, one_crystal_segments, read_pure_file

    s = cfg.search
    if cfg.pure == "auto":
        sel = find_pure(map_path, background=background, min_grains=s.min_grains, n_max=s.n_max,
                        per_grain=s.per_grain, seed=cfg.seed, min_distance=s.min_distance,
                        client=client, progress=progress)
        echo(f"pure patterns: {len(sel.indices)} from {sel.n_grains} grains ({sel.n_regions} grains "
             f"found, {sel.n_candidates} interior candidates, threshold {sel.threshold:.3f}, "
             f"{sel.seconds:.1f} s)")
        record = {"how": "auto", "n_regions": sel.n_regions, "n_candidates": sel.n_candidates,
                  "threshold": sel.threshold, "seconds": sel.seconds,
                  "label_map_counts": np.bincount(sel.labels[sel.labels >= 0].ravel()).tolist()}
        grains = np.asarray(sel.grains, np.int64)
        crystals = grains
        if s.one_crystal:
            t = time.perf_counter()
            crystals, joined = one_crystal_segments(map_path, sel.labels, grains, background=background,
                                                    static_bg=static_bg)
            record["one_crystal"] = {**joined, "seconds": round(time.perf_counter() - t, 2)}
            if joined.get("joined"):
                echo(f"one crystal: {joined['segments']} grains are {joined['crystals']} crystals (bent "
                     f"grains cut in parts, {len(joined['joined'])} joined where they meet): pairs and "
                     "the held-out split take each crystal as one grain")
        return np.asarray(sel.indices, np.int64), grains, crystals, record
    indices = read_pure_file(cfg.pure, tuple(nav_shape))
    # group the named patterns by grain, so that validation holds out whole grains
    try:
        sel = find_pure(map_path, background=background, min_grains=1, n_max=4, per_grain=1,
                        seed=cfg.seed, client=client, progress=progress)
        grains = sel.labels.reshape(-1)[indices].astype(np.int64)
    except InputError:
        grains = np.full(len(indices), -1, np.int64)
    lone = grains < 0
    grains[lone] = grains.max(initial=-1) + 1 + np.arange(int(lone.sum()))
    echo(f"pure patterns: {len(indices)} from {cfg.pure} in {len(np.unique(grains))} grains")
    return indices, grains, grains, {"how": "file", "file": str(cfg.pure)}


def run(config: AdaptConfig | dict | str | Path, *, client=None, progress: bool = True,
        echo: Callable[[str], None] = print) -> AdaptResult:
    """Adapt ``config.base`` (None: the shipped adapt base, ``ADAPT_BASE_CHECKPOINT``, or for
    patterns below ``SMALL_PATTERNS_BELOW`` px the small-pattern model) to the map
    ``config.map``; see module doc."""
    from kdeconv.cluster import open_client

    cfg = _as_config(config)
    if client is None:
        with open_client(None, echo=echo) as own:
            return _run(cfg, own, progress, echo)
    return _run(cfg, client, progress, echo)


def _run(cfg: AdaptConfig, client, progress: bool, echo) -> AdaptResult:
    from kdeconv.io.store import open_store, release_output

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    map_path, out = Path(cfg.map), Path(cfg.out)
    group = open_store(map_path, "map", arrays=("patterns",))
    src = group["patterns"]
    nav_shape = tuple(int(v) for v in src.shape[:-2])
    base_path = _base_path(cfg, src.shape[-2:])
    key = _resume_key(cfg, map_path, group, base_path)
    out = _prepare_run_folder(out, map_path, cfg.overwrite, key, echo)
    try:
        return _adapt(cfg, client, progress, echo, t0, seconds, map_path, out, group, src, nav_shape,
                      base_path)
    except InputError:
        # a refusal leaves nothing to resume, and no run folder that could pass for a finished one
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        # otherwise (Ctrl-C, a full disk, a crash) the folder stays, unfinished (no best.pt)
        release_output(out)


def _base_path(cfg: AdaptConfig, pattern_shape) -> Path:
    """``cfg.base``, or the shipped model for the map's pattern size (``adapt_base_for``)."""
    from kdeconv.separate.model_choice import adapt_base_for

    base_path = Path(cfg.base) if cfg.base else adapt_base_for(pattern_shape)
    if not cfg.base and not base_path.is_file():
        raise InputError(f"the shipped adapt base is missing ({base_path}); reinstall kdeconv "
                         "or pass --base")
    return base_path


# Budget keys: a rerun may give more or less time and still resume (as ``train --resume``).
_BUDGET_KEYS = ("out", "overwrite", "minutes", "max_steps")


def _resume_key(cfg: AdaptConfig, map_path: Path, group, base_path: Path) -> dict:
    """What an interrupted run must share with its rerun: the map, the base and the settings."""
    from kdeconv.model.checkpoint import file_sha256

    src = group["patterns"]
    settings = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _BUDGET_KEYS}
    return {"map": str(map_path.resolve()), "map_created": group.attrs.get("created"),
            "map_shape": list(src.shape), "map_dtype": str(src.dtype),
            "base_sha256": file_sha256(base_path) if base_path.is_file() else None,
            "settings": settings}


def _read_all(store: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_group(str(store), mode="r")["patterns"][...])


def _adapt(cfg, client, progress, echo, t0, seconds, map_path, out, group, src, nav_shape, base_path):
    from kdeconv.cluster import compute
    from kdeconv.config.generate import GenerateConfig
    from kdeconv.generate.driver import run_generate
    from kdeconv.io.resume import write_file_atomic
    from kdeconv.model import load_separator
    from kdeconv.model.checkpoint import file_sha256
    from kdeconv.preprocess.background import static_background_from_mean
    from kdeconv.separate.inputs import plan_model_input
    from kdeconv.separate.model_choice import adapt_lr_for
    from kdeconv.train import run as train_run

    base = load_separator(base_path, device="cpu", precision="fp32")
    plan = plan_model_input(src, base.meta, cfg.background, cfg.working_size)
    echo(plan.describe())
    if plan.warning():
        echo(plan.warning())

    # the map's static background, as separate computes it
    static_path = None
    if plan.background["static"] != "none":
        static_path = out / "static_background.npy"
    if static_path is not None and not static_path.is_file():
        import io

        import dask.array as da

        patterns = da.from_zarr(src)
        mean = compute(client, patterns.mean(axis=tuple(range(len(nav_shape))), dtype=np.float64),
                       progress=progress)
        buffer = io.BytesIO()
        np.save(buffer, static_background_from_mean(mean, cfg.background.static_smooth_std,
                                                    background=plan.background))
        write_file_atomic(static_path, buffer.getvalue())
    model_input = {"background": plan.background["mode"],
                   "static_background": str(static_path.resolve()) if static_path else None,
                   "static_operation": plan.background["static_operation"],
                   "dynamic": bool(plan.background["dynamic"]),
                   "dynamic_operation": plan.background["dynamic_operation"],
                   "mask": plan.background["mask"], "screen": plan.background["screen"],
                   "work_shape": list(plan.work_shape)}
    if plan.background["dynamic_std"] is not None and plan.resampled:
        scale = plan.work_shape[1] / plan.screen_shape[1]
        model_input["dynamic_std"] = plan.background["dynamic_std"] * scale
    else:
        model_input["dynamic_std"] = plan.background["dynamic_std"]

    # pure patterns and their grains (kept in pure.json for a rerun)
    t = time.perf_counter()
    pure_path = out / "pure.json"
    if pure_path.is_file():
        kept = json.loads(pure_path.read_text())
        pool, record = kept["pool"], kept["record"]
        indices, grains = np.asarray(kept["indices"], np.int64), np.asarray(kept["grains"], np.int64)
        crystals = np.asarray(kept.get("crystals", kept["grains"]), np.int64)
        labels = None if kept["labels"] is None else np.asarray(kept["labels"], np.int64)
        echo(f"pure patterns: {len(indices)} from {len(np.unique(grains))} grains, as chosen before "
             "the interruption")
    else:
        indices, grains, crystals, labels, pool, record = _choose_pure(
            cfg, map_path, src, plan, static_path, out, client, progress, echo)
        write_file_atomic(pure_path, json.dumps({
            "pool": pool, "record": record, "indices": indices.tolist(), "grains": grains.tolist(),
            "crystals": crystals.tolist(),
            "labels": None if labels is None else labels.tolist()}) + "\n")
    seconds["find_pure"] = time.perf_counter() - t
    # a crystal's segments (grain means apart) are paired and held out as one grain
    held = split_groups(crystals, cfg.val_fraction, cfg.seed, labels)
    noise = _recording_noise(pool, indices, grains, plan.background) if cfg.top_up_noise else None

    # pairs: training grains and held-out grains apart
    t = time.perf_counter()
    camera, camera_share = None, None
    if cfg.targets == "grain_mean":  # found on every grain: training and held-out targets lose the same
        every = GenerateConfig.model_validate(
            _pairs_config(cfg, pool, indices, grains, cfg.n_val_pairs, cfg.seed, model_input, noise))
        prepared = _prepared_pure(every)  # read and preprocessed once, for both splits' targets
        camera, camera_share = _camera_pattern(every, prepared, grains)
    stores = {}
    for name, keep, n, seed in (("train", ~held, cfg.n_pairs, cfg.seed),
                                ("val", held, cfg.n_val_pairs, cfg.seed + 1)):
        stores[name] = out / f"pairs_{name}.zarr"
        pairs = _pairs_config(cfg, pool, indices[keep], crystals[keep], n, seed, model_input, noise)
        if cfg.targets == "grain_mean":
            targets = out / f"targets_{name}.zarr"
            if not stores[name].exists():  # a finished pair store was made from these targets
                _grain_mean_targets(prepared[keep], grains[keep], targets, camera)
            pairs["source"]["targets"] = str(targets)
        gen = validate_config(GenerateConfig, pairs, "adapt pairs")
        # a finished store is kept, an interrupted one resumed (generate's own protocol)
        run_generate(gen, stores[name], client, overwrite=False, echo=lambda *_: None)
    seconds["generate"] = time.perf_counter() - t
    whole = not set(crystals[held]) & set(crystals[~held])
    echo(f"pairs: {cfg.n_pairs} from {len(np.unique(crystals[~held]))} grains, {cfg.n_val_pairs} held "
         + (f"out from {len(np.unique(crystals[held]))} other grains" if whole else
            f"out from {int(held.sum())} patterns of the same grains (too few grains to spare whole ones)")
         + (", towards grain means" if cfg.targets == "grain_mean" else "")
         + ("" if camera is None else
            f" less the camera's fine pattern ({camera_share:.2f} of their variance)")
         + ("" if noise is None else
            f", each mix topped up to one recording's noise (variance {noise[0]:.3g}·I "
            f"{'-' if noise[1] < 0 else '+'} {abs(noise[1]):.3g})")
         + f" ({seconds['generate']:.0f} s)")

    # the base on the held-out pairs: the score to beat, and how far the base is from this map
    t = time.perf_counter()
    before, _, _ = score_pairs(base, stores["val"])
    seconds["score"] = time.perf_counter() - t
    lr = cfg.lr or adapt_lr_for(base_path, before["weight_error"])
    echo(f"fine-tune: learning rate {lr:g} (the base's held-out weight error "
         f"{before['weight_error']:.3f})")

    # fine-tune
    t = time.perf_counter()
    base_meta_train = base.meta.get("train_config") or {}
    train_cfg = {
        "seed": cfg.seed, "init_checkpoint": str(base_path.resolve()),
        "loss": base_meta_train.get("loss") or {"pattern_l1": 1.0, "pattern_grad": 0.25,
                                                "pattern_ncc": 2.0, "weight_l1": 1.0},
        "batch_size": cfg.batch_size, "lr": lr, "warmup_steps": 20, "min_lr_ratio": 0.1,
        "max_steps": cfg.max_steps, "max_minutes": cfg.minutes, "steps_per_epoch": cfg.steps_per_epoch,
        "val_data": [str(stores["val"])], "val_batch_size": 32,
        "early_stop_patience": cfg.early_stop_patience, "ema_decay": cfg.ema_decay,
        "flips": cfg.flips, "log_every": 10,
        "threads": cfg.threads, "device": cfg.device, "precision": cfg.precision,
    }
    resumed_from = _saved_step(out / "train" / "last.pt")
    if resumed_from is not None:
        trained = train_run(train_cfg, data=[str(stores["train"])], out=out / "train", resume=True,
                            progress=progress, echo=echo)
    else:
        trained = train_run(train_cfg, data=[str(stores["train"])], out=out / "train", overwrite=True,
                            progress=progress, echo=echo)
    seconds["fine_tune"] = time.perf_counter() - t

    # held-out scores, claim rule, checkpoints
    t = time.perf_counter()
    kept = trained.last if cfg.keep == "at_stop" else trained.best
    adapted = load_separator(kept, device="cpu", precision="fp32")
    after, true_minority, pred_minority = score_pairs(adapted, stores["val"])
    rule = rule_from_held_out(true_minority, pred_minority, base.claim_rule)
    after["separating_bar"] = separating_bar(true_minority, pred_minority)
    seconds["score"] += time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0

    provenance = {
        "base": {"path": str(base_path), "sha256": file_sha256(base_path)},
        "map": {"path": str(map_path.resolve()), "nav_shape": list(nav_shape),
                "pattern_shape": list(plan.map_shape), "created": group.attrs.get("created")},
        "model_input": {"background": plan.decision, "working_size": plan.working_record()},
        "pure": {**record, "indices": indices.tolist(), "grains": grains.tolist(),
                 "crystals": crystals.tolist(), "held_out": held.tolist(), "n": int(len(indices)),
                 "n_grains": int(len(np.unique(crystals))), "n_segments": int(len(np.unique(grains)))},
        "pairs": {"train": cfg.n_pairs, "val": cfg.n_val_pairs, "targets": cfg.targets,
                  "noise": None if noise is None else list(noise),
                  # the camera's share of the grain means' variance, and whether it was taken out
                  "camera_pattern": {"share": None if camera_share is None else round(camera_share, 4),
                                     "removed": camera is not None},
                  "held_out_whole_grains": bool(whole),
                  "train_grains": int(len(np.unique(crystals[~held]))),
                  "val_grains": int(len(np.unique(crystals[held])))},
        "fine_tune": {"steps": trained.steps, "stop_reason": trained.stop_reason,
                      "best_step": trained.best_step, "resumed_from_step": resumed_from,
                      "kept": cfg.keep,
                      "kept_step": trained.steps if cfg.keep == "at_stop" else trained.best_step,
                      "seconds": round(trained.seconds, 1), "config": train_cfg},
        "held_out": {"before": before, "after": after},
        "claim_rule": rule, "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "config": cfg.model_dump(mode="json"),
    }
    report = out / "adapt.json"
    best, last = _install(trained.last, kept, out, rule, provenance, plan.working.as_dict(), report)
    result = AdaptResult(out, best, last, report, int(len(indices)), int(len(np.unique(crystals))),
                         cfg.n_pairs, cfg.n_val_pairs, trained.steps, trained.stop_reason, before,
                         after, rule, seconds)
    echo(result.summary())
    return result


def _prepare_run_folder(out: Path, map_path: Path, overwrite: bool, key: dict, echo) -> Path:
    """Lock the run folder and return it: an unfinished run of the same settings is kept (to be
    resumed), one of other settings cleared; a finished run or a folder that is not a run is
    refused without ``overwrite``."""
    from kdeconv.io import resume
    from kdeconv.io.store import lock_output, release_output

    out = out.resolve()
    mp = map_path.resolve()
    if out == mp or mp in out.parents or out in mp.parents:
        raise InputError(f"the run folder {out} must not be the map, inside it, or contain it")
    if not out.parent.exists():
        raise InputError(f"output folder does not exist: {out.parent}")
    lock_output(out)  # a second adapt into this folder is refused while this one runs
    try:
        resuming = False
        if out.exists() and any(out.iterdir()):
            found = resume.run_key(out)
            if overwrite:
                shutil.rmtree(out)
            elif (out / "best.pt").exists() or found is None:
                raise InputError(f"run folder already exists: {out} (use --overwrite to replace it)")
            elif resume.same_key(found, key):
                resuming = True
                echo(f"adapt: resuming the interrupted run in {out}")
            else:
                echo(f"{out.name}: an interrupted adapt with other settings (map, base or options); "
                     "starting over")
                shutil.rmtree(out)
        out.mkdir(exist_ok=True)
        if not resuming:
            resume.start_run(out, key)
    except BaseException:
        release_output(out)
        raise
    return out


def _saved_step(last: Path) -> int | None:
    """The step a run folder's last.pt was saved at, or None when there is none to resume."""
    if not last.is_file():
        return None
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        return int(ckpt["training_state"]["step"])
    except Exception:  # unreadable: the rerun trains afresh
        return None


def _choose_pure(cfg, map_path, src, plan, static_path, out, client, progress, echo):
    """(indices, grains, crystals, labels, pool store, record): the references, or the map's pure
    patterns."""
    from kdeconv.adapt.pure import pattern_features
    from kdeconv.adapt.references import (
        check_reference_level,
        group_references,
        read_references,
        reference_look_warning,
    )

    if cfg.references:
        refs = read_references(cfg.references, out / "references.zarr", plan.map_shape,
                               cfg.reference_labels)
        static = np.load(static_path) if static_path else None
        patterns = _read_all(refs.store)
        if static is not None and plan.background["static_operation"] == "subtract":
            from kdeconv.preprocess.mask import window_patterns

            # in the frame of the static background (a round screen's square, masked)
            check_reference_level(window_patterns(patterns, plan.background), static, src.dtype)
        if cfg.background.mode == "auto":
            warning = reference_look_warning(patterns, plan.background, plan.background["mode"])
            if warning:
                echo(warning)
        grains = group_references(pattern_features(patterns, plan.background, static))
        record = {"how": "references", "references": str(cfg.references),
                  "label_names": refs.label_names, "labels": refs.labels.tolist()}
        echo(f"references: {len(refs.indices)} pure patterns ({', '.join(refs.describe())}) from "
             f"{len(np.unique(grains))} distinct grains")
        return refs.indices, grains, grains, refs.labels, str(refs.store), record
    static = np.load(static_path) if static_path else None
    indices, grains, crystals, record = _pure_from_map(cfg, map_path, src.shape[:-2], plan.background,
                                                       static, client, progress, echo)
    return indices, grains, crystals, None, str(map_path.resolve()), record


def _install(trained_last: Path, kept: Path, out: Path, rule: dict, provenance: dict,
             working_range: dict, report: Path) -> tuple[Path, Path]:
    """last.pt, adapt.json and best.pt of the run folder, best.pt last (it marks the run finished):
    the trainer's last and ``kept`` weights, with the claim rule, the base's working range and the
    adapt provenance (written atomically; the base is never touched)."""
    from kdeconv.io.resume import RUN_KEY_FILE, write_file_atomic
    from kdeconv.model.checkpoint import update_checkpoint

    extra = {"claim_rule": rule, "working_range": working_range,
             "adapt": {k: provenance[k] for k in ("base", "map", "pairs", "held_out", "claim_rule")}}
    last = update_checkpoint(trained_last, out / "last.pt", **extra)
    write_file_atomic(report, json.dumps(provenance, indent=1, default=str) + "\n")
    best = update_checkpoint(kept, out / "best.pt", **extra)
    (out / RUN_KEY_FILE).unlink(missing_ok=True)
    return best, last
