"""End to end on the real CLI: simulated two-grain UP2 -> ingest -> separate -> export -> index.

The fraction of mixed pixels where both grains come back is printed. It is asserted only when the
shipped default model records that it is trained (default.json); an untrained placeholder must
still run the whole way and keep the data intact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

TOL_DEG = 5.0


def kdeconv(*args, cwd):
    env = dict(os.environ, KDECONV_PROGRESS="0")
    out = subprocess.run([sys.executable, "-m", "kdeconv.cli", *map(str, args)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"kdeconv {args[0]} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def default_model_is_trained() -> bool:
    """default.json is written when a trained model is installed (workflows/check_default_model.py)."""
    from kdeconv.model import DEFAULT_CHECKPOINT, file_sha256

    info = DEFAULT_CHECKPOINT.with_suffix(".json")
    if not info.is_file():
        return False
    record = json.loads(info.read_text())
    if record.get("sha256") and record["sha256"] != file_sha256(DEFAULT_CHECKPOINT):
        return False  # describes another file
    status = str(record.get("status", "")).lower()
    if "interim" in status or "placeholder" in status or "untrained" in status:
        return False  # a stand-in until the full training run is installed
    steps = (record.get("training") or {}).get("step") or (record.get("validation_metrics") or {}).get("step")
    return record.get("trained") is True or bool(steps)


def simulate_two_grains(tmp_path):
    """(ny, nx) map: 2 pure columns of each grain at the sides, mixtures wB 0.2..0.5 between."""
    import kikuchipy as kp
    from kikuchipy.detectors import EBSDDetector
    from orix.quaternion import Rotation

    mp = kp.data.nickel_ebsd_master_pattern_small(projection="lambert", hemisphere="upper")
    det = EBSDDetector(shape=(60, 60), pc=(0.5, 0.45, 0.55), sample_tilt=70)
    rot = Rotation.from_euler(np.deg2rad([[10, 20, 30], [75, 40, 5]]))
    pure = mp.get_patterns(rotations=rot, detector=det, energy=20, dtype_out=np.float32,
                           compute=True, show_progressbar=False).data.reshape(2, 60, 60)
    pure = (pure - pure.min(axis=(1, 2), keepdims=True)) / np.ptp(pure, axis=(1, 2), keepdims=True)
    ny, nx = 4, 8
    w_b = np.array([0.0, 0.0, 0.2, 0.3, 0.4, 0.5, 1.0, 1.0])  # weight of grain 2 per column
    y, x = np.mgrid[:60, :60]
    background = 0.6 + 0.4 * np.exp(-((y - 25) ** 2 + (x - 30) ** 2) / (2 * 25.0**2))
    rng = np.random.default_rng(7)
    data = np.empty((ny, nx, 60, 60), np.uint16)
    for j in range(nx):
        mix = (1 - w_b[j]) * pure[0] + w_b[j] * pure[1]
        data[:, j] = rng.poisson(2000 * background * (0.35 + 0.65 * mix), size=(ny, 60, 60))
    from kdeconv.io import write_up2

    path = write_up2(tmp_path / "two_grains.up2", data, step_x=0.5, step_y=0.5)
    return path, data, det, mp.phase, rot.data, np.broadcast_to(w_b, (ny, nx))


def test_up2_ingest_separate_export_index(tmp_path, cli):
    import kikuchipy as kp
    import zarr

    from kdeconv.evaluate.indexing import index_patterns, misorientation_deg
    from kdeconv.preprocess.background import remove_dynamic_background, remove_static_background

    up2, data, det, phase, quats, w_b = simulate_two_grains(tmp_path)
    # ingest and export in-process (the real CLI, fewer interpreter starts); separate as a user runs it
    ingest = cli("ingest", up2, tmp_path / "map.zarr", "--workers", "1")
    assert ingest.exit_code == 0, ingest.output
    out = kdeconv("separate", "map.zarr", "--out", "sep.zarr", "--workers", "2", cwd=tmp_path)
    assert "separate -> sep.zarr: 32 patterns" in out, out
    for name, target in (("A", "A.up2"), ("B", "B.h5")):
        export = cli("export", tmp_path / "sep.zarr", "--array", name, tmp_path / target, "--workers", "1")
        assert export.exit_code == 0, export.output

    sep = zarr.open_group(str(tmp_path / "sep.zarr"), mode="r")
    a, b, w = sep["A"][...], sep["B"][...], sep["weights"][...]
    assert a.dtype == b.dtype == np.uint16 and a.shape == b.shape == data.shape
    np.testing.assert_allclose(w.sum(-1), 1, atol=1e-5)
    assert (w[..., 0] >= w[..., 1]).all()
    assert sep.attrs["source"]["scan"]["step_x"] == pytest.approx(0.5)
    # Export keeps every bit, in both formats.
    np.testing.assert_array_equal(kp.load(tmp_path / "A.up2").data, a)
    np.testing.assert_array_equal(kp.load(tmp_path / "B.h5").data, b)

    # The oracle works: background-corrected mixtures index to their dominant grain.
    mixed = (w_b > 0) & (w_b < 1)
    flat = data.reshape(-1, 60, 60)
    corrected = remove_dynamic_background(remove_static_background(flat, flat.mean(0)))
    truth = np.stack([quats[int(g)] for g in (w_b.ravel() >= 0.5)])
    first = index_patterns(corrected, det, phase)
    pure = ~mixed.ravel()
    assert np.nanmean(misorientation_deg(first.quaternions, truth, phase.point_group)[pure] <= TOL_DEG) >= 0.9

    # Both grains back from one mixed pixel: A and B index to different grains of the two.
    got_a = index_patterns(a.reshape(-1, 60, 60), det, phase).quaternions
    got_b = index_patterns(b.reshape(-1, 60, 60), det, phase).quaternions
    n = got_a.shape[0]
    near = {}
    for name, got in (("a", got_a), ("b", got_b)):
        for g in (0, 1):
            angle = misorientation_deg(got, np.repeat(quats[g][None], n, 0), phase.point_group)
            near[name, g] = np.nan_to_num(angle, nan=180.0) <= TOL_DEG
    both = (near["a", 0] & near["b", 1]) | (near["a", 1] & near["b", 0])
    fraction = float(both[mixed.ravel()].mean())
    a_right = float((near["a", 0] | near["a", 1]).mean())
    wb = w[..., 1]
    trained = default_model_is_trained()
    print(f"\n{'trained' if trained else 'placeholder or interim'} default model: mixed pixels with both "
          f"grains recovered {fraction:.2f}; A indexes to a true grain {a_right:.2f}; mean wB mixed "
          f"{wb[mixed].mean():.2f} vs pure {wb[~mixed].mean():.2f} (true: "
          f"{np.minimum(w_b, 1 - w_b)[mixed].mean():.2f} vs 0)")
    if trained:
        # Honest bars for the shipped model: A indexes to one of the grains, the weights see the
        # mixing, and some mixed pixels give both grains (indexing C itself never does).
        # Checkpoints of the default training run after 10 and 25 minutes measured: A 1.00 and
        # 1.00; wB mixed - pure 0.03 and 0.07; both grains 0.12 and 0.31.
        assert a_right >= 0.9
        assert wb[mixed].mean() > wb[~mixed].mean() + 0.02
        assert fraction >= 0.1
