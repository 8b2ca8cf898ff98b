import numpy as np
import pytest

from kdeconv.evaluate.recovery import claim_angles, recovery_table


@pytest.fixture(scope="module")
def m3m():
    from orix.quaternion.symmetry import Oh

    return Oh


def _rot_z(deg):
    h = np.deg2rad(deg) / 2
    return np.array([np.cos(h), 0.0, 0.0, np.sin(h)])


def _case():
    # 4 mixed patterns (minority 0.15, 0.25, 0.35, 0.45) and 2 pure ones.
    ta = np.stack([_rot_z(10), _rot_z(10), _rot_z(10), _rot_z(10), _rot_z(10), _rot_z(10)])
    tb = np.stack([_rot_z(30)] * 4 + [np.full(4, np.nan)] * 2)
    w = np.array([[0.85, 0.15], [0.75, 0.25], [0.65, 0.35], [0.55, 0.45], [1, 0], [1, 0]])
    return ta, tb, w


def test_perfect_and_swapped_claims_recover_everything(m3m):
    ta, tb, w = _case()
    claimed = w[:, 1] > 0
    swapped = (np.where(claimed[:, None], tb, ta), np.where(claimed[:, None], ta, np.nan))
    for first, second in ((ta, tb), swapped):
        table = recovery_table(claim_angles(first, second, ta, tb, m3m), w, claimed)
        row = table["tolerances_deg"]["3"]
        assert row["mixed_both"] == 1.0 and row["mixed_minority"] == 1.0
        assert row["pure_ok"] == 1.0 and row["pure_invented"] == 0.0
        assert all(b["both"] == 1.0 and b["n"] == 1 for b in row["bins"].values())


def test_tolerance_and_symmetry(m3m):
    ta, tb, w = _case()
    claimed = w[:, 1] > 0
    # 2 deg off: recovered at 3 deg, not at 1 deg; 90 deg about z is a symmetry of m-3m: no error.
    first = np.stack([_rot_z(12)] * 6)
    second = np.where(claimed[:, None], np.stack([_rot_z(30 + 90)] * 6), np.nan)
    table = recovery_table(claim_angles(first, second, ta, tb, m3m), w, claimed)
    assert table["tolerances_deg"]["3"]["mixed_both"] == 1.0
    assert table["tolerances_deg"]["1"]["mixed_both"] == 0.0
    assert table["tolerances_deg"]["1"]["mixed_minority"] == 1.0


def test_single_claim_invented_grain_and_nothing(m3m):
    ta, tb, w = _case()
    none = np.zeros(6, bool)
    # Indexing the mixture: always the dominant grain, never a second one.
    angles = claim_angles(ta, np.full((6, 4), np.nan), ta, tb, m3m)
    row = recovery_table(angles, w, none)["tolerances_deg"]["3"]
    assert row["mixed_both"] == 0.0 and row["mixed_minority"] == 0.0 and row["pure_ok"] == 1.0
    # A second grain claimed on pure patterns is invented.
    second = np.stack([_rot_z(50)] * 6)
    row = recovery_table(claim_angles(ta, second, ta, tb, m3m), w, np.ones(6, bool))["tolerances_deg"]["3"]
    assert row["pure_kept"] == 1.0 and row["pure_invented"] == 1.0 and row["pure_ok"] == 0.0
    # Nothing indexed at all (all-zero predictions): zero recovery, no error.
    nan = np.full((6, 4), np.nan)
    row = recovery_table(claim_angles(nan, nan, ta, tb, m3m), w, np.zeros(6, bool))["tolerances_deg"]["3"]
    assert row["mixed_both"] == 0.0 and row["pure_kept"] == 0.0 and row["pure_ok"] == 0.0


def test_second_claimed_needs_both_the_weight_and_the_indexing_confidence():
    from kdeconv.config.claim import ClaimRule

    w = np.array([[0.99, 0.01], [0.96, 0.04], [0.96, 0.04], [0.3, 0.7], [0.5, 0.5]])
    cm = np.array([0.9, 0.1, 0.5, 0.31, 0.0])  # the last: B could not be indexed
    strict = ClaimRule(claim_weight=0.03, claim_min_cm=0.3)
    any_cm = ClaimRule(claim_weight=0.03, claim_min_cm=0.0)
    assert strict.claimed(w, cm).tolist() == [False, False, True, True, False]
    assert any_cm.claimed(w, cm).tolist() == [False, True, True, True, True]


def test_the_confidence_bar_follows_how_the_phase_indexes():
    from kdeconv.config.claim import CM_FLOOR, CM_LEVEL, ClaimRule, cm_bars, indexing_levels

    # phase 0 indexes like the fcc maps the bar was chosen on, phase 1 (an hcp phase) at 0.58,
    # phase 2 (a hostile detector) at 0.1; 25 dominant patterns each, plus unindexed ones
    first_cm = np.concatenate([np.full(25, 0.8), np.full(25, 0.58), np.full(25, 0.1), np.zeros(5)])
    first_phase = np.repeat([0, 1, 2, -1], [25, 25, 25, 5])
    assert indexing_levels(first_cm, first_phase) == pytest.approx({0: 0.8, 1: 0.58, 2: 0.1})
    second_phase = np.roll(first_phase, 10)  # B of another phase than A in places
    bars, by_phase = cm_bars(0.3, first_cm, first_phase, second_phase)
    assert by_phase == pytest.approx({0: 0.3, 1: 0.3 - (CM_LEVEL - 0.58), 2: CM_FLOOR})
    assert by_phase[1] == pytest.approx(0.23)
    assert bars.tolist() == pytest.approx([{-1: 0.3}.get(p, by_phase.get(p)) for p in second_phase])
    # too few indexed patterns of a phase: no level, the model's bar
    assert cm_bars(0.3, np.full(5, 0.5), np.zeros(5, int), np.zeros(5, int))[1] == {}
    assert cm_bars(0.3, np.full(5, 0.5))[0].tolist() == [0.3] * 5
    # without phases, one level for the map; a model bar under the floor is never raised
    assert cm_bars(0.3, np.full(30, 0.6))[1] == pytest.approx({-1: 0.25})
    assert cm_bars(0.1, np.full(30, 0.3))[1] == pytest.approx({-1: 0.1})
    # a B of the hcp phase at cm 0.25 is claimed under its scaled bar, not under the model's
    rule = ClaimRule(claim_weight=0.03, claim_min_cm=0.3)
    w = np.array([[0.6, 0.4], [0.6, 0.4]])
    cm = np.array([0.25, 0.25])
    assert rule.claimed(w, cm).tolist() == [False, False]
    assert rule.claimed(w, cm, cm_bar=np.array([0.3, 0.23])).tolist() == [False, True]


def test_inside_grains_the_higher_bar_applies():
    from kdeconv.config.claim import ClaimRule

    w = np.array([[0.95, 0.05], [0.95, 0.05], [0.85, 0.15], [0.85, 0.15]])
    cm = np.full(4, 0.9)
    in_grain = np.array([False, True, False, True])
    rule = ClaimRule(claim_weight=0.02, claim_min_cm=0.3, claim_weight_in_grain=0.08)
    assert rule.claimed(w, cm, in_grain).tolist() == [True, False, True, True]
    assert rule.claimed(w, cm).tolist() == [True, True, True, True]  # no mask: the model's bar
    # the in-grain bar never lowers the model's
    low = ClaimRule(claim_weight=0.1, claim_min_cm=0.3, claim_weight_in_grain=0.01)
    assert low.claimed(w, cm, in_grain).tolist() == [False, False, True, True]


def test_without_grain_context_the_isolated_bar_applies():
    from kdeconv.config.claim import ClaimRule

    w = np.array([[0.995, 0.005], [0.95, 0.05], [0.85, 0.15]])
    cm = np.full(3, 0.9)
    rule = ClaimRule(claim_weight=0.003, claim_min_cm=0.3, claim_weight_isolated=0.02)
    assert rule.claimed(w, cm).tolist() == [False, True, True]  # a stack: the isolated bar
    # a map with its grains: boundary pixels keep the low bar, the isolated one does not apply
    assert rule.claimed(w, cm, np.zeros(3, bool)).tolist() == [True, True, True]
    assert ClaimRule.checked(rule.as_dict()) == rule  # stored and read back
    # the model's isolated bar travels with its rule, unless a bar is asked for
    stored = {"claim_weight": 0.003, "claim_min_cm": 0.3, "claim_weight_isolated": 0.02}
    got, source = ClaimRule.resolve(None, None, stored)
    assert got == rule and source["claim_weight_isolated"] == "model"
    asked, source = ClaimRule.resolve(0.01, None, stored)
    assert asked.claim_weight_isolated is None and "claim_weight_isolated" not in source


def test_isolated_bar_is_the_lowest_that_keeps_inventions_rare():
    from kdeconv.config.claim import ISOLATED_MAX_INVENTED, isolated_claim_weight

    # 200 isolated pure patterns: 12 read 0.004 and 4 read 0.012, all of them inventing a grain
    # if claimed; the rest read 0.001.
    minority = np.r_[np.full(12, 0.004), np.full(4, 0.012), np.full(184, 0.001)]
    invented = minority > 0.002
    bar, shares = isolated_claim_weight(minority, invented, 0.003)
    assert shares["0.003"] == 16 / 200 and shares["0.01"] == 4 / 200 and shares["0.015"] == 0.0
    assert bar == 0.015 and shares["0.015"] <= ISOLATED_MAX_INVENTED
    # a model whose own bar already keeps them clean needs none
    assert isolated_claim_weight(minority, np.zeros(200, bool), 0.003)[0] is None
    # a B that indexes where A is (not invented) does not raise the bar
    assert isolated_claim_weight(minority, minority > 0.01, 0.003)[0] == 0.015
    assert isolated_claim_weight(minority, minority > 0.011, 0.0075)[0] == 0.015


def test_in_grain_bar_sits_above_what_deep_interiors_read():
    from kdeconv.config.claim import IN_GRAIN_MIN_PIXELS, in_grain_claim_weight

    interiors = np.linspace(0.0, 0.1, 1001)  # p99 = 0.099
    assert in_grain_claim_weight(interiors) == 0.109
    assert in_grain_claim_weight(np.r_[interiors, np.nan]) == 0.109  # blank frames are ignored
    assert in_grain_claim_weight(np.zeros(IN_GRAIN_MIN_PIXELS - 1)) is None


def test_claim_rule_comes_from_the_config_then_the_model_then_the_fallback():
    from kdeconv.config.claim import FALLBACK_CLAIM_RULE, ClaimRule

    model = {"claim_weight": 0.05, "claim_min_cm": 0.4}
    assert ClaimRule.resolve(None, None, None) == (
        FALLBACK_CLAIM_RULE, {"claim_weight": "fallback", "claim_min_cm": "fallback"})
    assert ClaimRule.resolve(None, None, model) == (
        ClaimRule(**model), {"claim_weight": "model", "claim_min_cm": "model"})
    mixed, source = ClaimRule.resolve(0.01, None, model)
    assert (mixed.claim_weight, mixed.claim_min_cm) == (0.01, 0.4)
    assert source == {"claim_weight": "config", "claim_min_cm": "model"}
    # the map's in-grain bar (written by separate) is kept whatever the rest comes from
    stored = {"claim_weight_in_grain": 0.07}
    rule, source = ClaimRule.resolve(None, None, stored)
    assert (rule.claim_weight, rule.claim_weight_in_grain) == (FALLBACK_CLAIM_RULE.claim_weight, 0.07)
    assert source["claim_weight_in_grain"] == "map" and source["claim_weight"] == "fallback"


def test_a_stored_claim_rule_out_of_range_is_one_line():
    from kdeconv.config.claim import ClaimRule
    from kdeconv.errors import InputError

    with pytest.raises(InputError, match="out of range"):
        ClaimRule.checked({"claim_weight": 0.9, "claim_min_cm": 0.3}, "checkpoint x.pt")
    with pytest.raises(InputError, match="must hold claim_weight"):
        ClaimRule.checked({"claim_weight": 0.1}, "checkpoint x.pt")


def test_pairs_recovered_takes_either_assignment():
    from orix.quaternion.symmetry import Oh

    from kdeconv.evaluate.recovery import pairs_recovered

    eye, turn = np.array([[1.0, 0, 0, 0]]), np.array([[np.cos(0.2), np.sin(0.2), 0, 0]])
    both, one = pairs_recovered(np.r_[turn, eye, eye], np.r_[eye, np.full((1, 4), np.nan), turn],
                                np.r_[eye, eye, eye], np.r_[turn, turn, turn], Oh)
    assert both.tolist() == [True, False, True] and one.tolist() == [True, True, True]


def test_a_second_grain_counts_where_a_neighbour_has_it_as_its_dominant_grain(m3m):
    from kdeconv.config.claim import neighbour_supported

    # a 5x6 map: grain 10° left of column 3, grain 30° from it; column 2 holds both
    nav = (5, 6)
    first = np.stack([_rot_z(10) if x < 3 else _rot_z(30) for _ in range(5) for x in range(6)])
    phase = np.zeros(30, int)
    second = np.full((30, 4), np.nan)
    second[2] = _rot_z(31)                      # 1° off the grain next door: seen
    second[8] = _rot_z(30 + 90)                 # the same grain by cubic symmetry: seen
    second[12] = _rot_z(55)                     # no pixel holds it: invented
    second[0] = _rot_z(30)                      # three steps from the grain: seen at radius 3 only
    seen = neighbour_supported(second, phase, first, phase, nav, [m3m], radius_px=3, tol_deg=5)
    assert seen.tolist() == [i in (0, 2, 8) for i in range(30)]
    assert not neighbour_supported(second, phase, first, phase, nav, [m3m], radius_px=2)[0]
    # another phase never matches; rows limit the work
    other = phase.copy()
    other[8] = 1
    seen = neighbour_supported(second, other, first, phase, nav, [m3m, m3m], rows=np.arange(30) != 2)
    assert seen[[0, 2, 8]].tolist() == [True, False, False]
    # a pixel is not its own neighbour
    second[20] = first[20]
    first[[14, 19, 21, 26]] = _rot_z(70)
    assert not neighbour_supported(second, phase, first, phase, nav, [m3m], radius_px=1)[20]
    assert neighbour_supported(second, phase, first, phase, nav, [m3m], radius_px=1.5)[20]
    # a line scan or a stack has no neighbours to ask
    assert neighbour_supported(second[:6], phase[:6], first[:6], phase[:6], (6,), [m3m]) is None
