"""Driver of ``kdeconv simulate-map``: a Voronoi polycrystal of one or several phases, with
beam-footprint mixtures near boundaries, as a vendor file plus its ground truth.

Writes ``DIR/map.up2`` (raw uint16 counts, exactly what a user's EDAX file holds) or
``DIR/map.up1`` (8-bit: an 8-bit camera, or the vendor-processed style), named in the truth's
``attrs["map_file"]``, and the ground truth ``DIR/truth.zarr`` (kind ``truth``): ``C`` (the
file's patterns), ``A``/``B`` (clean patterns, normalised to [0, 1] and stored as uint16 over the
full range, like ``separate`` writes them), ``weights`` (wA >= wB), ``rotation_a``/``rotation_b``
quaternions, ``grain_a``/``grain_b`` ids and ``phase_a``/``phase_b`` phase indices (-1 = none).
``attrs["phases"]`` lists each phase (name, master spec, point and space group, fraction).
Each grain has one phase. Its orientation is one per grain (one pattern simulated per grain)
unless ``deformation`` bends it (a rotation growing across the grain about its own axis) or
scatters it per pixel; then each pixel's patterns are simulated at its own orientations, and
``rotation_a``/``rotation_b`` hold them.

Phases: each grain takes one, the number of grains per phase following the fractions (largest
remainder), assigned at random from ``default_rng([seed, 3])``.

Recording (``record_counts``) is kdeconv.generate.augment's realism with one camera for the whole
map: counts = Poisson(dose * G * ((1-s) + s*blur(M))) + read noise, noise for pixel i from
``default_rng([seed, 2, i])``; then the camera's fixed-pattern gain (one field for the map, on
the recorded signal as pixel response is), its hot and dead pixels (the same pixels on every
pattern) and, for an 8-bit camera, a fixed full scale. ``style: processed`` then exports them as
vendor software does (``vendor_processed``). Raw and processed maps of the same seed hold the
same recorded counts.

The map is written a block of scan rows at a time, so memory follows ``chunk_mb``, not the map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdeconv.config.simulate_map import ProcessedSpec, RealismSpec, SimulateMapConfig
from kdeconv.evaluate.metrics import minmax01
from kdeconv.evaluate.polycrystal import (
    deformation_fields,
    deformed_quaternions,
    footprint_samples,
    grain_fractions,
    random_seeds,
    top_two,
)
from kdeconv.io.store import finalize_output, nav_chunks, prepare_output, store_attrs

__all__ = ["simulate_map", "UP2_NAME", "UP1_NAME", "TRUTH_NAME", "assign_phases",
           "record_counts", "expected_recording", "recording_unit", "camera_effects", "screen_window",
           "vendor_processed", "detector_background"]

UP2_NAME = "map.up2"
UP1_NAME = "map.up1"
TRUTH_NAME = "truth.zarr"

# Seeds of the map's random streams: [seed, k] (k = 0 grain seeds, 1 orientations, 2 noise per
# pixel, 3 phases of the grains, 4 gain field, 5 defect pixels, 6 deformation axes, 7 scatter).
_GAIN_STREAM, _DEFECT_STREAM, _DEFORMATION_STREAM, _SCATTER_STREAM = 4, 5, 6, 7


def assign_phases(rng: np.random.Generator, n_grains: int, fractions) -> np.ndarray:
    """Phase index per grain: counts from ``fractions`` by largest remainder, shuffled."""
    fractions = np.asarray(fractions, np.float64)
    if len(fractions) == 1:
        return np.zeros(n_grains, np.int16)
    exact = fractions / fractions.sum() * n_grains
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[:n_grains - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(fractions)), counts)).astype(np.int16)


# ---------------------------------------------------------------------------- pure kernels

def _augment_params(r: RealismSpec) -> np.ndarray:
    """The augment row of this camera (detector effects off: they are fixed per map here)."""
    from kdeconv.generate.augment import AUGMENT_COLUMNS

    params = np.zeros(len(AUGMENT_COLUMNS), np.float32)
    values = {"realism": 1.0, "dose": r.dose, "read_noise": r.read_noise, "blur_sigma": r.blur_sigma,
              "gamma": 1.0, "signal_fraction": r.signal_fraction,
              "background_width": r.background_width, "background_dy": r.background_dy,
              "background_dx": r.background_dx}
    for name, value in values.items():
        params[AUGMENT_COLUMNS.index(name)] = value
    return params


def full_scale(r: RealismSpec, shape: tuple[int, int]) -> float:
    """Counts at an 8-bit camera's 255: a fifth above the brightest expected pixel."""
    from kdeconv.generate.augment import background_field

    g = background_field(tuple(shape), r.background_width, r.background_dy, r.background_dx)
    return 1.2 * r.dose * float(g.max())


# A round screen's edge: the light falls over about this many pixels.
SCREEN_EDGE_PX = 2.0


def screen_window(shape: tuple[int, int], radius: float, floor: float,
                  offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(sy, sx) light through a round screen of ``radius`` half shorter sides, its centre
    ``offset`` (dy, dx) half shorter sides off the pattern's: 1 inside, a soft edge, ``floor``
    beyond."""
    sy, sx = shape
    half = min(sy, sx) / 2
    cy, cx = (sy - 1) / 2 + offset[0] * half, (sx - 1) / 2 + offset[1] * half
    r = np.hypot(*np.meshgrid(np.arange(sy) - cy, np.arange(sx) - cx, indexing="ij"))
    edge = radius * half
    return floor + (1 - floor) / (1 + np.exp((r - edge) / (SCREEN_EDGE_PX / 4)))


def camera_effects(seed: int, r: RealismSpec, shape: tuple[int, int]) -> np.ndarray | None:
    """The map's one fixed-pattern gain (sy, sx): ``1 + gain * F``, times the light through a
    round screen when it has one; None with neither."""
    out = None
    if r.gain > 0:
        from kdeconv.generate.augment import gain_field

        field = gain_field(tuple(shape), np.random.default_rng([seed, _GAIN_STREAM]))
        out = np.clip(1.0 + r.gain * field, 0.05, None)
    if r.screen_radius is not None:
        window = screen_window(tuple(shape), r.screen_radius, r.screen_floor, r.screen_offset)
        out = window if out is None else out * window
    return out


def record_counts(mixtures: np.ndarray, r: RealismSpec, seed: int, pixel_index: np.ndarray,
                  gain_map: np.ndarray | None = None) -> np.ndarray:
    """What the camera records for clean mixtures (n, sy, sx) in [0, 1]: float64 values of the
    file's dtype (uint16 counts, or 0..255 for an 8-bit camera). Pattern k is map pixel
    ``pixel_index[k]`` (flat, row-major), which keys its noise."""
    from kdeconv.generate.augment import degrade_one, stuck_pixels

    params = _augment_params(r)
    out = np.empty(mixtures.shape, np.float64)
    for k, m in enumerate(mixtures):
        rng = np.random.default_rng([seed, 2, int(pixel_index[k])])
        scaled = degrade_one(m, params, rng, background_correction=False,  # counts / dose
                             exact_counts=True)
        counts = np.rint(scaled.astype(np.float64) * r.dose)
        if gain_map is not None:
            counts = counts * gain_map
        if r.defect_fraction > 0:
            # the same stream for every pattern: the same pixels are stuck
            counts = stuck_pixels(counts, r.defect_fraction, np.random.default_rng([seed, _DEFECT_STREAM]))
        out[k] = counts
    if r.bits == 8:
        return np.clip(np.rint(out * (255.0 / full_scale(r, mixtures.shape[-2:]))), 0, 255)
    return np.clip(np.rint(out), 0, 65535)


def recording_unit(r: RealismSpec, shape: tuple[int, int], gain_map: np.ndarray | None = None,
                   level: float = 1.0) -> np.ndarray:
    """What the camera records (sy, sx), in the file's units, for a uniform ``s*M + 1 - s`` of
    ``level``: the dose over its background field, through its gain and an 8-bit camera's full
    scale."""
    from kdeconv.generate.augment import background_field

    unit = r.dose * background_field(tuple(shape), r.background_width, r.background_dy, r.background_dx)
    unit = unit * level
    if gain_map is not None:
        unit = unit * gain_map
    if r.bits == 8:
        unit = unit * (255.0 / full_scale(r, shape))
    return unit


def expected_recording(mixtures: np.ndarray, r: RealismSpec, gain_map: np.ndarray | None = None
                       ) -> np.ndarray:
    """The noise-free mean of ``record_counts`` for clean mixtures (n, sy, sx) in [0, 1], in the
    file's units: what the camera would record with no shot or read noise, no rounding and no
    stuck pixels (``gain_map`` as ``camera_effects`` gives it)."""
    from kdeconv.generate.augment import gaussian_blur

    m = np.asarray(mixtures, np.float32)
    shape = tuple(m.shape[-2:])
    if r.blur_sigma > 0:
        m = np.stack([gaussian_blur(p, r.blur_sigma) for p in m.reshape((-1,) + shape)]).reshape(m.shape)
    return recording_unit(r, shape, gain_map) * (r.signal_fraction * m.astype(np.float64)
                                                 + (1.0 - r.signal_fraction))


def detector_background(r: RealismSpec, shape: tuple[int, int], gain_map: np.ndarray | None,
                        mean_signal: float) -> np.ndarray:
    """The camera's own static background (sy, sx) in recorded units: the expected recording of a
    pattern with no bands (``mean_signal`` everywhere), as a background acquisition gives it."""
    return recording_unit(r, shape, gain_map, (1 - r.signal_fraction) + r.signal_fraction * mean_signal)


def vendor_processed(recorded: np.ndarray, static_bg: np.ndarray, spec: ProcessedSpec) -> np.ndarray:
    """Vendor export of recorded patterns (n, sy, sx): static then dynamic background removed,
    circular mask, each pattern stretched between its percentiles to uint8 0..255."""
    from kdeconv.preprocess.background import remove_dynamic_background, remove_static_background
    from kdeconv.preprocess.mask import circular_mask

    floor = 1e-6 * max(float(static_bg.max()), 1e-12)
    bg = np.maximum(static_bg, floor) if spec.static_operation == "divide" else static_bg
    out = remove_static_background(recorded.astype(np.float32), bg, operation=spec.static_operation,
                                   dtype_out=np.float32, out_range=(0, 1))
    if spec.dynamic:
        out = remove_dynamic_background(out, dtype_out=np.float32, out_range=(0, 1))
    inside = circular_mask(out.shape[-2:]) if spec.mask else np.ones(out.shape[-2:], bool)
    lo, hi = np.percentile(out[:, inside], spec.stretch_percentiles, axis=1)
    span = np.where(hi > lo, hi - lo, 1.0)
    stretched = np.clip((out - lo[:, None, None]) / span[:, None, None], 0, 1)
    return np.where(inside, np.rint(stretched * 255), 0).astype(np.uint8)


# ---------------------------------------------------------------------------------- driver

def _load_phases(config: SimulateMapConfig):
    """(name, spec, fraction, Master) per phase; a bad phase fails before any output exists."""
    from kdeconv.simulate import load_master

    return [(name, spec, fraction, load_master(spec)) for name, spec, fraction in config.map_phases()]


def _clean_patterns(masters, phase, quats, detector, shape) -> np.ndarray:
    """Clean pattern (n, sy, sx) float32 in [0, 1] of each orientation; zero where ``phase`` is -1."""
    from orix.quaternion import Rotation

    from kdeconv.simulate import simulate_patterns

    out = np.zeros((len(quats),) + tuple(shape), np.float32)
    for k, master in enumerate(masters):
        rows = np.flatnonzero(phase == k)
        if rows.size:
            out[rows] = minmax01(simulate_patterns(master, Rotation(quats[rows]), detector))
    return out


def _blocks(nav: tuple[int, int], nav_chunk: tuple[int, int]):
    """(row slice, column slice) of each truth chunk, in map order."""
    for y in range(0, nav[0], nav_chunk[0]):
        for x in range(0, nav[1], nav_chunk[1]):
            yield slice(y, min(y + nav_chunk[0], nav[0])), slice(x, min(x + nav_chunk[1], nav[1]))


def simulate_map(config: SimulateMapConfig, out_dir: str | Path, overwrite: bool = False,
                 echo=None) -> Path:
    import zarr

    from kdeconv.simulate import random_quaternions

    out_dir = Path(out_dir)
    phases = _load_phases(config)
    staging = prepare_output(out_dir, overwrite)
    staging.mkdir()
    ny, nx = config.nav_shape
    sy, sx = config.detector.shape
    r = config.realism
    eight_bit = config.style == "processed" or r.bits == 8
    map_name = UP1_NAME if eight_bit else UP2_NAME

    seeds = random_seeds(np.random.default_rng([config.seed, 0]), config.n_grains, (ny, nx))
    grain_quats = random_quaternions(np.random.default_rng([config.seed, 1]), config.n_grains)
    grain_phase = assign_phases(np.random.default_rng([config.seed, 3]), config.n_grains,
                                [f for _, _, f, _ in phases])
    fp = config.footprint
    offsets, fp_weights = footprint_samples(fp.shape, fp.radius, fp.aspect_y, fp.supersample)
    fractions = grain_fractions(seeds, (ny, nx), offsets, fp_weights)
    grain_a, grain_b, weights = top_two(fractions, config.min_weight)
    phase_lookup = np.append(grain_phase, -1).astype(np.int16)
    phase_a, phase_b = phase_lookup[grain_a], phase_lookup[grain_b]

    detector = config.detector.to_kikuchipy()
    masters = [m for *_, m in phases]
    quat_lookup = np.concatenate([grain_quats, np.full((1, 4), np.nan)])  # index -1 -> no grain
    rotation_a, rotation_b = quat_lookup[grain_a], quat_lookup[grain_b]
    bend = config.deformation
    if bend.active:
        axes, directions = deformation_fields(np.random.default_rng([config.seed, _DEFORMATION_STREAM]),
                                              config.n_grains)
        scatter = (np.random.default_rng([config.seed, _SCATTER_STREAM]).normal(size=(2, ny * nx, 3))
                   * bend.scatter / np.sqrt(3))  # rms angle = bend.scatter
        yx = np.stack(np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij"), -1).reshape(-1, 2)
        rotation_a, rotation_b = (
            deformed_quaternions(grain_quats, seeds, axes, directions, g.reshape(-1), yx,
                                 bend.gradient * config.step, scatter[k]).reshape(ny, nx, 4)
            for k, g in enumerate((grain_a, grain_b)))
    # one clean pattern per grain: a flat map's patterns, and the detector background's level
    grain_patterns = _clean_patterns(masters, grain_phase, grain_quats, detector, (sy, sx))
    if not bend.active:
        lookup = np.concatenate([grain_patterns, np.zeros((1, sy, sx), np.float32)])  # -1: no grain
    gain_map = camera_effects(config.seed, r, (sy, sx))

    def recorded_block(ys: slice, xs: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ga, gb = grain_a[ys, xs].reshape(-1), grain_b[ys, xs].reshape(-1)
        w = weights[ys, xs].reshape(-1, 2)
        if bend.active:
            clean_a, clean_b = (_clean_patterns(masters, phase_lookup[g], rot[ys, xs].reshape(-1, 4),
                                                detector, (sy, sx))
                                for g, rot in ((ga, rotation_a), (gb, rotation_b)))
        else:
            clean_a, clean_b = lookup[ga], lookup[gb]
        mixtures = w[:, :1, None] * clean_a + w[:, 1:, None] * clean_b
        pixel_index = np.arange(ny * nx).reshape(ny, nx)[ys, xs].reshape(-1)
        return record_counts(mixtures, r, config.seed, pixel_index, gain_map), clean_a, clean_b

    static_bg = None
    if config.style == "processed":
        if config.processed.static == "detector":
            static_bg = detector_background(r, (sy, sx), gain_map, float(grain_patterns.mean()))
        else:
            from kdeconv.preprocess.background import static_background_from_mean

            total = np.zeros((sy, sx), np.float64)
            for ys, xs in _blocks((ny, nx), nav_chunks((ny, nx), (sy, sx), 2, config.chunk_mb)[:2]):
                total += recorded_block(ys, xs)[0].sum(axis=0)
            static_bg = static_background_from_mean(total / (ny * nx), "auto")

    group = zarr.open_group(str(staging / TRUTH_NAME), mode="w", zarr_format=3)
    nav_chunk = nav_chunks((ny, nx), (sy, sx), 2, config.chunk_mb)[:2]
    file_dtype = np.uint8 if eight_bit else np.uint16
    every = {"write_empty_chunks": True}  # an all-zero B chunk (pure grains) is data, not a hole
    arrays = {name: group.create_array(name, shape=(ny, nx, sy, sx), chunks=nav_chunk + (sy, sx),
                                       dtype=dtype, config=every)
              for name, dtype in (("C", file_dtype), ("A", np.uint16), ("B", np.uint16))}
    to_u16 = (lambda x: np.rint(np.clip(x, 0, 1) * 65535).astype(np.uint16))
    for ys, xs in _blocks((ny, nx), nav_chunk):
        counts, clean_a, clean_b = recorded_block(ys, xs)
        block = (vendor_processed(counts, static_bg, config.processed) if config.style == "processed"
                 else counts.astype(file_dtype))
        shape = (ys.stop - ys.start, xs.stop - xs.start, sy, sx)
        arrays["C"][ys, xs] = block.reshape(shape)
        arrays["A"][ys, xs] = to_u16(clean_a).reshape(shape)
        arrays["B"][ys, xs] = to_u16(clean_b).reshape(shape)

    small = {"weights": weights, "rotation_a": rotation_a.astype(np.float32),
             "rotation_b": rotation_b.astype(np.float32),
             "grain_a": grain_a, "grain_b": grain_b, "phase_a": phase_a, "phase_b": phase_b}
    for name, data in small.items():
        group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=nav_chunk + data.shape[2:],
                           config=every)[...] = data
    phase_attrs = [{"name": name, "master": spec, "energy": master.energy,
                    "point_group": master.phase.point_group.name,
                    "space_group": master.phase.space_group.number if master.phase.space_group else None,
                    "fraction": fraction, "n_grains": int((grain_phase == k).sum())}
                   for k, (name, spec, fraction, master) in enumerate(phases)]
    source = {"path": map_name, "format": "simulated (kdeconv simulate-map)",
              "scan": {"step_y": config.step, "step_x": config.step, "unit": "um"},
              "detector": config.detector.to_attrs()}
    extra = {"full_scale_counts": full_scale(r, (sy, sx))} if eight_bit and config.style == "raw" else {}
    group.attrs.update(store_attrs(
        "truth", config, source, detector=config.detector.to_attrs(), phase=phase_attrs[0],
        phases=phase_attrs,
        style=config.style, map_file=map_name, file_dtype=np.dtype(file_dtype).name,
        grains={"seeds_yx": seeds, "quaternions": grain_quats, "phase": grain_phase}, **extra))

    import dask.array as da

    from kdeconv.io.formats.edax_binary import write_up1, write_up2

    (write_up1 if eight_bit else write_up2)(staging / map_name, da.from_zarr(arrays["C"]), config.step,
                                            config.step)
    _overview_png(staging / "overview.png", grain_a, weights, phase_a if len(phases) > 1 else None,
                  [name for name, *_ in phases])
    finalize_output(staging, out_dir)
    if echo is not None:
        n_mixed = int((weights[..., 1] > 0).sum())
        n_cross = int(((weights[..., 1] > 0) & (phase_a != phase_b)).sum())
        listed = " + ".join(f"{p['name']} ({p['n_grains']})" for p in phase_attrs)
        echo(f"simulate-map: {ny}x{nx} pixels of {sy}x{sx}, {config.n_grains} grains: {listed}; "
             f"{n_mixed} mixed ({n_mixed / (ny * nx):.0%}"
             + (f", {n_cross} across phases" if len(phases) > 1 else "")
             + f"), {config.style} -> {out_dir / map_name}, {out_dir / TRUTH_NAME}")
    return out_dir


def _overview_png(path: Path, grain_a: np.ndarray, weights: np.ndarray, phase_a: np.ndarray | None,
                  names: list[str]) -> None:
    from kdeconv import figures

    n = 2 if phase_a is None else 3
    fig, axes = figures.subplots(1, n, figsize=(4 * n, 3.6), constrained_layout=True)
    axes[0].imshow(grain_a, cmap="tab20", interpolation="nearest")
    axes[0].set_title("dominant grain")
    im = axes[1].imshow(weights[..., 1], cmap="magma", vmin=0, vmax=0.5, interpolation="nearest")
    axes[1].set_title("minority weight wB")
    fig.colorbar(im, ax=axes[1])
    if phase_a is not None:
        im = axes[2].imshow(phase_a, cmap="Set1", vmin=0, vmax=max(len(names) - 1, 1),
                            interpolation="nearest")
        axes[2].set_title("dominant phase: " + ", ".join(f"{k} {n}" for k, n in enumerate(names)), fontsize=8)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    fig.savefig(path, dpi=100)
