"""Resampling between a map's pattern size and the model's working size (known answers)."""

import numpy as np
import pytest

from kdeconv.errors import InputError
from kdeconv.preprocess.resample import (
    WorkingRange,
    resample,
    resample_matrix,
    working_range_of,
    working_shape,
)


@pytest.mark.parametrize("n_in, n_out", [(480, 120), (120, 480), (100, 37), (37, 100), (60, 60)])
def test_rows_sum_to_one_so_a_constant_stays_constant(n_in, n_out):
    m = resample_matrix(n_in, n_out)
    assert m.shape == (n_out, n_in) and m.dtype == np.float32
    np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-6)
    out = resample(np.full((2, n_in, n_in), 7.0), (n_out, n_out))
    np.testing.assert_allclose(out, 7.0, atol=1e-4)


def test_shrinking_by_an_integer_factor_is_binning():
    x = np.random.default_rng(0).random((3, 12, 18)).astype(np.float32)
    binned = x.reshape(3, 4, 3, 6, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(resample(x, (4, 6)), binned, atol=1e-6)


def test_enlarging_keeps_a_linear_ramp_inside_the_edges():
    ramp = np.tile(np.arange(20, dtype=np.float32), (20, 1))
    up = resample(ramp[None], (20, 80))[0]
    centres = (np.arange(80) + 0.5) / 4 - 0.5
    inside = (centres >= 0) & (centres <= 19)
    np.testing.assert_allclose(up[:, inside], np.broadcast_to(centres[inside], (20, inside.sum())), atol=1e-4)


def test_a_smooth_pattern_survives_down_and_up():
    y, x = np.mgrid[:480, :480] / 480.0
    smooth = (np.sin(6 * x) * np.cos(4 * y) + 2).astype(np.float32)
    back = resample(resample(smooth[None], (120, 120)), (480, 480))[0]
    assert np.abs(back - smooth).max() < 0.02
    assert back.shape == smooth.shape and back.dtype == np.float32


def test_working_shape_leaves_sizes_inside_the_range_and_scales_the_rest():
    model = WorkingRange(60, 160, 120)
    assert working_shape((96, 96), model) == (96, 96)
    assert working_shape((480, 480), model) == (120, 120)
    assert working_shape((480, 640), model) == (120, 160)       # aspect kept
    assert working_shape((40, 40), model) == (120, 120)
    assert working_shape((480, 480), model, size=96) == (96, 96)  # --working-size wins
    assert working_shape((480, 480), None) == (480, 480)
    with pytest.raises(InputError):
        working_shape((480, 480), model, size=8)


def test_working_range_of_a_checkpoint():
    assert working_range_of({"working_range": {"low": 80, "high": 200, "preferred": 128}}).as_dict() == \
        {"low": 80, "high": 200, "preferred": 128}
    stores = {"data": {"stores": [{"shape": [120, 120], "n": 40000}, {"shape": [60, 60], "n": 12000},
                                  {"shape": [96, 128], "n": 8000}]}}
    assert working_range_of(stores).as_dict() == {"low": 60, "high": 120, "preferred": 120}
    assert working_range_of({}).as_dict() == {"low": 60, "high": 120, "preferred": 120}
