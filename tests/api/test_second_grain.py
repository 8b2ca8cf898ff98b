"""``Separation.second_grain``, ``in_grain`` and ``claim_rule`` on a simulated map of two grains
with a straight boundary: the claims lie on the boundary, inside grains the map's own bar keeps
pure pixels clean, and ``to_zarr`` writes what was measured."""

from __future__ import annotations

import numpy as np
import pytest

import kdeconv
from kdeconv.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

NAV = (10, 16)          # grain 0 left of the boundary between columns 7 and 8, grain 1 right of it
BLANK = ((0, 8), (5, 7))  # frames of one value, on the boundary where a claim would be


def two_grain_map(nav=NAV, sig=(60, 60), seed=3):
    """Raw Ni counts of two grains under a Gaussian beam; returns (counts, true minority)."""
    from orix.quaternion import Rotation

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.metrics import minmax01
    from kdeconv.evaluate.polycrystal import footprint_samples, grain_fractions
    from kdeconv.evaluate.simulate_map import record_counts
    from kdeconv.simulate import nickel_master, random_quaternions, simulate_patterns

    ny, nx = nav
    seeds = np.array([[ny / 2 - 0.5, nx / 4 - 0.5], [ny / 2 - 0.5, 3 * nx / 4 - 0.5]])
    offsets, weights = footprint_samples("gaussian", 1.0)
    fractions = grain_fractions(seeds, nav, offsets, weights)
    detector = DetectorSpec(shape=sig).to_kikuchipy()
    rotations = Rotation(random_quaternions(np.random.default_rng(seed), 2))
    pure = minmax01(simulate_patterns(nickel_master(), rotations, detector)).astype(np.float32)
    mixtures = np.einsum("ng,gyx->nyx", fractions.reshape(-1, 2), pure).astype(np.float32)
    realism = SimulateMapConfig(seed=seed, nav_shape=nav, n_grains=2, realism={"dose": 1500.0}).realism
    counts = record_counts(mixtures, realism, seed, np.arange(len(mixtures)))
    counts = counts.astype(np.uint16).reshape(nav + tuple(sig))
    for y, x in BLANK:
        counts[y, x] = 0
    return counts, 1.0 - fractions.max(-1)


@pytest.fixture(scope="module")
def two_grains():
    counts, minority = two_grain_map()
    return counts, minority, kdeconv.separate(counts, progress=False)


def blank_mask(nav=NAV):
    mask = np.zeros(nav, bool)
    mask[tuple(np.array(BLANK).T)] = True
    return mask


def test_claims_lie_on_the_boundary_and_the_map_bar_keeps_grains_clean(two_grains):
    _, minority, sep = two_grains
    claimed = sep.second_grain()
    assert claimed.shape == NAV and claimed.dtype == bool
    rule, in_grain = sep.claim_rule, sep.in_grain
    assert in_grain.shape == NAV and in_grain.dtype == bool
    assert rule.claim_weight_in_grain > rule.claim_weight  # this model reads these grains high
    # claims on true mixtures only, in every row of the boundary, never on a blank frame
    blank = blank_mask()
    assert claimed.any(axis=1).all()
    assert (minority[claimed] >= 0.05).all()
    assert not claimed[blank].any()
    # the model's bar alone would claim the pure grain interiors too
    w = np.nan_to_num(np.asarray(sep.weights, np.float64).reshape(-1, 2))
    everywhere = rule.claimed(w, np.ones(len(w))).reshape(NAV)
    assert everywhere[(minority < 0.01) & ~blank].mean() > 0.9
    assert not claimed[minority < 0.01].any()


def test_cm_gates_the_claims_as_evaluate_does(two_grains):
    _, _, sep = two_grains
    claimed = sep.second_grain()
    rule = sep.claim_rule
    assert not sep.second_grain(cm=np.zeros(NAV)).any()               # B never indexed
    np.testing.assert_array_equal(sep.second_grain(cm=np.ones(NAV[0] * NAV[1])), claimed)
    cm = np.full(NAV, rule.claim_min_cm)
    y, x = np.argwhere(claimed)[0]
    cm[y, x] = rule.claim_min_cm - 0.01
    cm[~claimed] = np.nan                                              # unindexed: not claimed
    expected = claimed.copy()
    expected[y, x] = False
    np.testing.assert_array_equal(sep.second_grain(cm=cm), expected)
    # evaluate's call on the store's flat arrays
    w = np.nan_to_num(np.asarray(sep.weights, np.float64).reshape(-1, 2))
    flat = rule.claimed(w, np.nan_to_num(cm).reshape(-1), sep.in_grain.reshape(-1)).reshape(NAV)
    np.testing.assert_array_equal(sep.second_grain(cm=cm), flat)
    with pytest.raises(InputError, match="cm holds 3 values for 160 patterns"):
        sep.second_grain(cm=np.ones(3))


def test_to_zarr_writes_the_measured_in_grain_claims_without_segmenting_again(two_grains, tmp_path,
                                                                               monkeypatch):
    import importlib

    import zarr

    from kdeconv.separate.claims import write_in_grain_claims

    find_pure = importlib.import_module("kdeconv.adapt.find_pure")  # the package's find_pure is a function

    counts, _, sep = two_grains
    in_grain, rule = sep.in_grain, sep.claim_rule  # measured before the store is written
    segment_map = find_pure.segment_map

    def refuse(*args, **kwargs):
        raise AssertionError("segmented again")

    monkeypatch.setattr(find_pure, "segment_map", refuse)
    out = sep.to_zarr(tmp_path / "sep.zarr")
    group = zarr.open_group(str(out), mode="r+")
    np.testing.assert_array_equal(group["in_grain"][...], in_grain)
    assert group.attrs["claim_rule"]["claim_weight_in_grain"] == rule.claim_weight_in_grain
    assert group.attrs["in_grain_claims"]["bar"] == rule.claim_weight_in_grain
    # the store path, measuring from the store's weights and static background, agrees
    monkeypatch.setattr(find_pure, "segment_map", segment_map)
    record = write_in_grain_claims(group, counts, sep._plan.model_input.background)
    assert record["bar"] == rule.claim_weight_in_grain
    # (the neighbour fit's pairs leave the mask the claims wrote)
    np.testing.assert_array_equal(group["in_grain"][...] & ~sep.neighbour_pair, in_grain)
    assert group.attrs["neighbour_fit"] == sep.neighbour_fit_record
    assert sep.neighbour_fit_record["pairs"] == int(sep.neighbour_pair.sum())


def test_a_lazy_separation_computes_what_the_claims_need(two_grains, tmp_path):
    import dask.array as da
    import zarr

    counts, _, reference = two_grains
    lazy = kdeconv.separate(da.from_array(counts, chunks=counts.shape), progress=False)
    off = kdeconv.separate(da.from_array(counts, chunks=counts.shape), in_grain_claims=False,
                           progress=False)
    assert off.in_grain is None and off.claim_rule.claim_weight_in_grain is None
    assert off.lazy and off._nav_values is None  # the model did not run
    assert lazy.lazy
    np.testing.assert_array_equal(lazy.second_grain(), reference.second_grain())
    np.testing.assert_array_equal(lazy.in_grain, reference.in_grain)
    assert lazy.lazy  # A and B are still to compute
    # writing first: the claims come from what the store holds, and stay for later questions
    written = kdeconv.separate(da.from_array(counts, chunks=counts.shape), progress=False)
    group = zarr.open_group(str(written.to_zarr(tmp_path / "lazy.zarr")), mode="r")
    assert written._claims is not None and written._nav_values is not None
    np.testing.assert_array_equal(group["in_grain"][...], reference.in_grain)
    np.testing.assert_array_equal(written.second_grain(), reference.second_grain())


def test_plot_outlines_the_claimed_pixels(two_grains):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection

    _, _, sep = two_grains
    ax = sep.plot(claimed=True)
    outlines = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(outlines) == 1 and len(outlines[0].get_segments()) > 0
    only_one = np.zeros(NAV, bool)
    only_one[4, 8] = True
    ax = sep.plot(claimed=only_one)
    (outline,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(outline.get_segments()) == 4  # one pixel's four edges
    with pytest.raises(InputError, match="shape"):
        sep.plot(claimed=np.zeros((2, 2), bool))


def test_a_phase_that_indexes_lower_gets_a_lower_confidence_bar(two_grains):
    from kdeconv.config.claim import CM_LEVEL

    _, _, sep = two_grains
    claimed = sep.second_grain()
    rule = sep.claim_rule
    cm = np.where(claimed, 0.25, 0.0)                        # every claimed B at cm 0.25 < 0.3
    assert rule.claim_min_cm == 0.3 and not sep.second_grain(cm=cm).any()
    # A indexes like the fcc maps the bar was chosen on: the model's bar stays
    assert not sep.second_grain(cm=cm, cm_a=np.full(NAV, 0.8)).any()
    # A indexes at 0.55 (as hcp phases do): the bar is 0.3 - (CM_LEVEL - 0.55) = 0.2
    assert 0.3 - (CM_LEVEL - 0.55) < 0.25
    np.testing.assert_array_equal(sep.second_grain(cm=cm, cm_a=np.full(NAV, 0.55)), claimed)
    # per phase: only B of the phase that indexes low is claimed
    phase_a = np.zeros(NAV, int)
    phase_a[:, : NAV[1] // 2] = 1
    cm_a = np.where(phase_a == 1, 0.55, 0.8)
    assert (claimed & (phase_a == 1)).any() and (claimed & (phase_a == 0)).any()
    np.testing.assert_array_equal(sep.second_grain(cm=cm, cm_a=cm_a, phase_a=phase_a, phase_b=phase_a),
                                  claimed & (phase_a == 1))
    with pytest.raises(InputError, match="cm_a holds 3 values for 160 patterns"):
        sep.second_grain(cm=cm, cm_a=np.ones(3))
    with pytest.raises(InputError, match="phase_a and phase_b go together"):
        sep.second_grain(cm=cm, cm_a=cm_a, phase_a=phase_a)


def _xmap(quaternions, cm):
    from orix.crystal_map import CrystalMap, Phase, PhaseList
    from orix.quaternion import Rotation

    ny, nx = NAV
    y, x = np.divmod(np.arange(ny * nx), nx)
    return CrystalMap(Rotation(quaternions), phase_id=np.zeros(ny * nx, int), x=x.astype(float),
                      y=y.astype(float), phase_list=PhaseList(Phase("ni", point_group="m-3m")),
                      prop={"cm": np.asarray(cm, float).reshape(-1)})


def test_with_crystal_maps_a_second_grain_must_be_seen_nearby(two_grains):
    from orix.quaternion import Rotation

    _, _, sep = two_grains
    claimed = sep.second_grain()
    grains = Rotation.from_axes_angles([[0, 0, 1], [1, 1, 0]], np.deg2rad([20, 35])).data
    left = np.arange(NAV[0] * NAV[1]) % NAV[1] < 8
    q_a = np.where(left[:, None], grains[0], grains[1])
    q_b = np.where(left[:, None], grains[1], grains[0])        # each pixel's B: the grain next door
    invented = np.flatnonzero(claimed.reshape(-1))[0]
    q_b[invented] = Rotation.from_axes_angles([1, 2, 3], np.deg2rad(50)).data  # held by no pixel
    xmap_a, xmap_b = _xmap(q_a, np.full(NAV, 0.8)), _xmap(q_b, np.full(NAV, 0.8))
    expected = claimed.copy().reshape(-1)
    expected[invented] = False
    np.testing.assert_array_equal(sep.second_grain(xmap_a=xmap_a, xmap_b=xmap_b).reshape(-1), expected)
    # off, the crystal maps give the confidences only
    np.testing.assert_array_equal(sep.second_grain(xmap_a=xmap_a, xmap_b=xmap_b, neighbour_px=None), claimed)
    # B seen nearby need only index: at cm 0.15 it is claimed, below the bar of 0.3 without neighbours
    faint_b = _xmap(q_b, np.full(NAV, 0.15))
    np.testing.assert_array_equal(sep.second_grain(xmap_a=xmap_a, xmap_b=faint_b).reshape(-1), expected)
    assert not sep.second_grain(xmap_a=xmap_a, xmap_b=faint_b, neighbour_px=None).any()
    assert not sep.second_grain(xmap_a=xmap_a, xmap_b=_xmap(q_b, np.full(NAV, 0.05))).any()
    with pytest.raises(InputError, match="go together"):
        sep.second_grain(xmap_b=xmap_b)
    with pytest.raises(InputError, match="48 values for 160 patterns"):
        sep.second_grain(xmap_a=xmap_a[:3], xmap_b=xmap_b[:3])  # three rows of the map


def test_the_neighbour_fit_takes_its_reach_from_a_dict_or_is_switched_off(two_grains):
    counts, _, default = two_grains
    record = default.neighbour_fit_record
    assert (record["radius_px"], record["far_radius_px"]) == (3, 6)
    near = kdeconv.separate(counts, neighbour_fit={"radius": 2, "far_radius": 0}, progress=False)
    assert (near.neighbour_fit_record["radius_px"], near.neighbour_fit_record["far_radius_px"]) == (2, 0)
    # the model's outputs are the same: only pixels the shorter reach still pairs differ
    unpaired = ~(default.neighbour_pair | near.neighbour_pair)
    np.testing.assert_array_equal(np.asarray(near.B)[unpaired], np.asarray(default.B)[unpaired])
    off = kdeconv.separate(counts, neighbour_fit=False, progress=False)
    assert off.neighbour_fit_record is None and off.neighbour_pair is None
    with pytest.raises(Exception, match="radius"):
        kdeconv.separate(counts, neighbour_fit={"radius": 0}, progress=False)
