"""Driver of ``kdeconv simulate-map``: a Voronoi Ni polycrystal with beam-footprint mixtures.

Writes ``DIR/map.up2`` (raw uint16 counts, exactly what a user's EDAX file holds) and the ground
truth ``DIR/truth.zarr`` (kind ``truth``): ``C`` (the same counts), ``A``/``B`` (clean patterns,
normalised to [0, 1] and stored as uint16 over the full range, like ``separate`` writes them),
``weights`` (wA >= wB), ``rotation_a``/``rotation_b`` quaternions, ``grain_a``/``grain_b`` ids
(-1 = none). Each grain has one orientation, so one pattern is simulated per grain.

Realism is kdeconv.generate.augment's model with one fixed camera setting for the whole map
(a static background, as on a real detector): counts = Poisson(dose * G * ((1-s) + s*blur(M))).
Noise for pixel i comes from ``default_rng([seed, 2, i])``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdeconv.config.simulate_map import SimulateMapConfig
from kdeconv.evaluate.metrics import minmax01
from kdeconv.evaluate.polycrystal import footprint_samples, grain_fractions, random_seeds, top_two
from kdeconv.io.store import finalize_output, nav_chunks, prepare_output, store_attrs

__all__ = ["simulate_map", "UP2_NAME", "TRUTH_NAME", "detector_attrs"]

UP2_NAME = "map.up2"
TRUTH_NAME = "truth.zarr"


def detector_attrs(config: SimulateMapConfig) -> dict:
    d = config.detector
    return {"shape": list(d.shape), "pc": list(d.pc), "sample_tilt": d.sample_tilt, "tilt": d.tilt,
            "binning": 1, "convention": "bruker"}


def _counts(mixtures: np.ndarray, config: SimulateMapConfig) -> np.ndarray:
    """Raw uint16 counts for clean mixtures (n, sy, sx) in [0, 1] (kdeconv.generate realism)."""
    from kdeconv.generate.augment import AUGMENT_COLUMNS, degrade_one

    r = config.realism
    params = np.zeros(len(AUGMENT_COLUMNS), np.float32)
    values = {"realism": 1.0, "dose": r.dose, "read_noise": r.read_noise, "blur_sigma": r.blur_sigma,
              "gamma": 1.0, "signal_fraction": r.signal_fraction,
              "background_width": r.background_width, "background_dy": r.background_dy,
              "background_dx": r.background_dx}
    for name, value in values.items():
        params[AUGMENT_COLUMNS.index(name)] = value
    out = np.empty(mixtures.shape, np.uint16)
    for i, m in enumerate(mixtures):
        rng = np.random.default_rng([config.seed, 2, i])
        scaled = degrade_one(m, params, rng, background_correction=False)  # counts / dose
        out[i] = np.clip(np.rint(scaled.astype(np.float64) * r.dose), 0, 65535).astype(np.uint16)
    return out


def _write_truth(path: Path, arrays: dict[str, np.ndarray], attrs: dict, chunk_mb: float) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    nav = arrays["C"].shape[:2]
    sig = arrays["C"].shape[2:]
    nav_chunk = nav_chunks(nav, sig, 2, chunk_mb)[:2]
    for name, data in arrays.items():
        chunks = nav_chunk + data.shape[2:]
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                                 config={"write_empty_chunks": True})
        arr[...] = data
    group.attrs.update(attrs)


def simulate_map(config: SimulateMapConfig, out_dir: str | Path, overwrite: bool = False,
                 echo=None) -> Path:
    from orix.quaternion import Rotation

    from kdeconv.io.edax import write_up2
    from kdeconv.simulate import load_master, make_detector, random_quaternions, simulate_patterns

    out_dir = Path(out_dir)
    staging = prepare_output(out_dir, overwrite)
    staging.mkdir()
    ny, nx = config.nav_shape
    sy, sx = config.detector.shape

    seeds = random_seeds(np.random.default_rng([config.seed, 0]), config.n_grains, (ny, nx))
    grain_quats = random_quaternions(np.random.default_rng([config.seed, 1]), config.n_grains)
    fp = config.footprint
    offsets, fp_weights = footprint_samples(fp.shape, fp.radius, fp.aspect_y, fp.supersample)
    fractions = grain_fractions(seeds, (ny, nx), offsets, fp_weights)
    grain_a, grain_b, weights = top_two(fractions, config.min_weight)

    master = load_master({"kind": "nickel"})
    det = config.detector
    detector = make_detector(det.shape, det.pc, det.tilt, det.sample_tilt)
    grain_patterns = minmax01(simulate_patterns(master, Rotation(grain_quats), detector)).astype(np.float32)
    zero = np.zeros((1, sy, sx), np.float32)
    lookup = np.concatenate([grain_patterns, zero])  # index -1 -> the zero pattern

    ga, gb = grain_a.reshape(-1), grain_b.reshape(-1)
    w = weights.reshape(-1, 2)
    clean_a, clean_b = lookup[ga], lookup[gb]
    mixtures = w[:, :1, None] * clean_a + w[:, 1:, None] * clean_b
    counts = _counts(mixtures, config).reshape(ny, nx, sy, sx)

    to_u16 = (lambda x: np.rint(np.clip(x, 0, 1) * 65535).astype(np.uint16).reshape(ny, nx, sy, sx))
    quat_lookup = np.concatenate([grain_quats, np.full((1, 4), np.nan)]).astype(np.float32)
    source = {"path": UP2_NAME, "format": "simulated (kdeconv simulate-map)",
              "scan": {"step_y": config.step, "step_x": config.step, "unit": "um"},
              "detector": detector_attrs(config)}
    attrs = store_attrs("truth", config, source, detector=detector_attrs(config),
                        phase={"name": "ni", "master": {"kind": "nickel"},
                               "point_group": master.phase.point_group.name},
                        grains={"seeds_yx": seeds, "quaternions": grain_quats})
    write_up2(staging / UP2_NAME, counts, config.step, config.step)
    _write_truth(staging / TRUTH_NAME, {
        "C": counts, "A": to_u16(clean_a), "B": to_u16(clean_b), "weights": weights,
        "rotation_a": quat_lookup[ga].reshape(ny, nx, 4), "rotation_b": quat_lookup[gb].reshape(ny, nx, 4),
        "grain_a": grain_a, "grain_b": grain_b,
    }, attrs, config.chunk_mb)
    _overview_png(staging / "overview.png", grain_a, weights)
    finalize_output(staging, out_dir)
    if echo is not None:
        n_mixed = int((weights[..., 1] > 0).sum())
        echo(f"simulate-map: {ny}x{nx} pixels, {config.n_grains} grains, {n_mixed} mixed "
             f"({n_mixed / (ny * nx):.0%}) -> {out_dir / UP2_NAME}, {out_dir / TRUTH_NAME}")
    return out_dir


def _overview_png(path: Path, grain_a: np.ndarray, weights: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), constrained_layout=True)
    axes[0].imshow(grain_a, cmap="tab20", interpolation="nearest")
    axes[0].set_title("dominant grain")
    im = axes[1].imshow(weights[..., 1], cmap="magma", vmin=0, vmax=0.5, interpolation="nearest")
    axes[1].set_title("minority weight wB")
    fig.colorbar(im, ax=axes[1])
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    fig.savefig(path, dpi=100)
    plt.close(fig)
