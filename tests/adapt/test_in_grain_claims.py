"""The map's own claim bar inside grains (kdeconv.separate.claims) on simulated maps with known
grains: where it applies, what it is, and that it keeps pure pixels clean without losing mixtures."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from pure_maps import write_map

from kdeconv.adapt import segment_map
from kdeconv.config.claim import ClaimRule
from kdeconv.separate.claims import (
    describe_in_grain_claims,
    mostly_mixed_warning,
    unfamiliar_warning,
    write_in_grain_claims,
)


def _separated(path, minority: np.ndarray, rule: dict | None):
    """A separated store holding only what the claims need: the weights (and the model's rule)."""
    group = zarr.open_group(str(path), mode="w")
    w = np.stack([1 - minority, minority], axis=-1).astype(np.float32)
    group.create_array("weights", data=w, chunks=(8, 8, 2))
    group.attrs["claim_rule"] = rule
    return group


def test_in_grain_bar_keeps_pure_pixels_clean_and_mixtures_claimed(sim_map, tmp_path):
    sim = sim_map(dose=1500.0, seed=0)
    store = write_map(tmp_path / "map.zarr", sim.counts, (8, 24))
    # A weight head that reads every pure pattern of this map as 0.06 (a phase it misjudges) and
    # mixtures as they are, plus 0.06.
    rng = np.random.default_rng(0)
    predicted = np.clip(sim.minority + 0.06 + rng.normal(0, 0.005, sim.minority.shape), 0, 0.5)
    group = _separated(tmp_path / "sep.zarr", predicted, {"claim_weight": 0.02, "claim_min_cm": 0.3})
    record = write_in_grain_claims(group, store, background={})
    in_grain = np.asarray(group["in_grain"][...])
    assert in_grain.shape == sim.minority.shape and group["in_grain"].chunks == (8, 8)
    assert 0.06 < record["bar"] < 0.1 and record["n_deep"] >= 50
    assert record["unfamiliar"] is False and unfamiliar_warning(record) is None
    rule = ClaimRule.checked(group.attrs["claim_rule"])
    assert (rule.claim_weight, rule.claim_min_cm, rule.claim_weight_in_grain) == (0.02, 0.3, record["bar"])
    # the segmentation's grains are grains: most pixels inside one are pure in the truth, the
    # rest faint grain edges, never a strong mixture
    assert (sim.minority[in_grain] < 0.05).mean() > 0.85
    assert sim.minority[in_grain].max() < 0.25
    w = np.asarray(group["weights"][...]).reshape(-1, 2)
    claimed = rule.claimed(w, np.ones(len(w)), in_grain).reshape(sim.minority.shape)
    pure, mixed = sim.minority < 0.01, sim.minority >= 0.25
    before = ClaimRule(claim_weight=0.02, claim_min_cm=0.3).claimed(w, np.ones(len(w))).reshape(pure.shape)
    assert before[pure].mean() == 1.0                       # the model's bar alone: all invented
    assert claimed[pure].mean() < 0.5 * before[pure].mean()  # most pure pixels now kept clean
    assert claimed[mixed].all()                              # no strong mixture is lost


def test_a_model_that_reads_pure_interiors_as_mixtures_is_told_to_adapt(sim_map, tmp_path):
    """A weight head that reads every pattern of a map near 50/50 (what an unfamiliar detector's
    real patterns get): the interiors say so, and one warning line names adapt."""
    sim = sim_map(dose=1500.0, seed=0)
    store = write_map(tmp_path / "map.zarr", sim.counts, (8, 24))
    predicted = np.clip(0.42 + np.random.default_rng(1).normal(0, 0.02, sim.minority.shape), 0, 0.5)
    group = _separated(tmp_path / "sep.zarr", predicted, {"claim_weight": 0.01, "claim_min_cm": 0.3})
    record = write_in_grain_claims(group, store, background={})
    assert record["unfamiliar"] is True and 0.4 < record["deep_minority_p50_p99"][0] < 0.44
    assert dict(group.attrs["in_grain_claims"])["unfamiliar"] is True
    line = unfamiliar_warning(record)
    assert line.startswith("Warning: ") and "\n" not in line and "--adapt" in line and "0.42" in line


def test_a_stack_read_as_mostly_mixtures_is_told_to_adapt():
    def weights(minority):
        minority = np.asarray(minority, np.float64)
        return np.stack([1 - minority, minority], axis=-1)

    line = mostly_mixed_warning(weights(np.full(20, 0.45)))
    assert line.startswith("Warning: ") and "20 patterns" in line and "0.45" in line and "--adapt" in line
    assert mostly_mixed_warning(weights(np.full(20, 0.05))) is None      # a familiar detector
    assert mostly_mixed_warning(weights(np.full(10, 0.45))) is None      # too few to say
    blank = weights(np.r_[np.full(12, 0.02), np.full(8, 0.45)])
    blank[:12] = np.nan                                                   # blank frames say nothing
    assert mostly_mixed_warning(blank) is None
    mixed = weights(np.r_[np.full(12, 0.02), np.full(20, 0.45)])
    assert "20 patterns" not in mostly_mixed_warning(mixed) and "32 patterns" in mostly_mixed_warning(mixed)


def test_a_map_too_small_keeps_the_models_bar(tmp_path):
    counts = np.random.default_rng(0).integers(0, 1000, (3, 8, 16, 16)).astype(np.uint16)
    store = write_map(tmp_path / "map.zarr", counts, (3, 8))
    rule = {"claim_weight": 0.003, "claim_min_cm": 0.3, "claim_weight_isolated": 0.02}
    group = _separated(tmp_path / "sep.zarr", np.full((3, 8), 0.05), rule)
    record = write_in_grain_claims(group, store, background={})
    assert record["bar"] is None and "5x5" in record["why_none"]
    assert "in_grain" not in group
    assert dict(group.attrs["claim_rule"]) == rule  # the model's isolated bar is kept
    line = describe_in_grain_claims(record, dict(group.attrs["claim_rule"]))
    assert "patterns without grains, minority >= 0.02" in line
    # a pattern reading 0.01 is claimed at the map's boundary bar but not without grains
    claims = ClaimRule.checked(rule)
    assert claims.claimed(np.array([[0.99, 0.01]]), np.ones(1)).tolist() == [False]
    assert claims.claimed(np.array([[0.99, 0.01]]), np.ones(1), np.zeros(1, bool)).tolist() == [True]


def test_segment_map_reads_arrays_as_stores(sim_map, tmp_path):
    sim = sim_map(dose=1500.0, seed=1)
    store = write_map(tmp_path / "map.zarr", sim.counts, (6, 24))
    from_store = segment_map(store)
    from_array = segment_map(sim.counts)
    np.testing.assert_array_equal(from_store.labels, from_array.labels)
    np.testing.assert_array_equal(from_store.interior, from_array.interior)


@pytest.mark.filterwarnings("ignore:the model reads this map's grain interiors")
def test_separate_writes_the_in_grain_bar_and_the_api_agrees(sim_map, tmp_path):
    from distributed import Client, LocalCluster

    import kdeconv
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.driver import separate_map

    sim = sim_map(dose=1500.0, seed=0)
    store = write_map(tmp_path / "map.zarr", sim.counts, (8, 24))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc, \
            Client(lc) as client:
        lines = []
        separate_map(store, tmp_path / "sep.zarr", SeparateConfig(panels=0), client=client,
                     echo=lines.append, progress=False)
    assert any(line.startswith("claims inside grains: minority >=") for line in lines), lines
    sep = zarr.open_group(str(tmp_path / "sep.zarr"), mode="r")
    record = sep.attrs["in_grain_claims"]
    rule, source = ClaimRule.resolve(None, None, sep.attrs["claim_rule"])
    assert rule.claim_weight_in_grain == record["bar"] and record["n_deep"] >= 50
    assert source["claim_weight_in_grain"] == "map"
    # the warning to adapt is printed exactly when the interiors read as mixtures
    warned = [line for line in lines if line.startswith("Warning: the model reads")]
    assert len(warned) == int(record["unfamiliar"])
    in_grain = np.asarray(sep["in_grain"][...])
    # (the neighbour fit's pairs leave the mask: their weights passed the fit's own tests)
    cleared = sep.attrs["neighbour_fit"]["in_grain_cleared"]
    assert in_grain.sum() == record["n_in_grain"] - cleared and sim.minority[in_grain].max() < 0.25
    # the notebook API writes the same store
    kdeconv.separate(sim.counts, progress=False).to_zarr(tmp_path / "api.zarr")
    api = zarr.open_group(str(tmp_path / "api.zarr"), mode="r")
    np.testing.assert_array_equal(np.asarray(api["in_grain"][...]), in_grain)
    # (batches follow the chunks, so the weights may differ in the last bits)
    assert api.attrs["claim_rule"]["claim_weight_in_grain"] == pytest.approx(record["bar"], abs=1e-3)
    # and with in_grain_claims off, the model's rule alone
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as lc, \
            Client(lc) as client:
        separate_map(store, tmp_path / "off.zarr", SeparateConfig(panels=0, in_grain_claims=False),
                     client=client, progress=False)
    off = zarr.open_group(str(tmp_path / "off.zarr"), mode="r")
    assert "in_grain" not in off and "claim_weight_in_grain" not in (off.attrs.get("claim_rule") or {})
