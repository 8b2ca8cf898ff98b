"""Pure patterns drawn at many beam energies are projected in one call per master array, with the
same bytes as one projection per pattern."""

import numpy as np
import zarr

import kdeconv.simulate as simulate
from kdeconv.config import validate_config
from kdeconv.config.generate import GenerateConfig
from kdeconv.generate import driver
from kdeconv.generate.chunk import bin_patterns, pure_geometry


def test_energies_on_one_master_array_share_one_projection(tmp_path, monkeypatch):
    cfg = validate_config(GenerateConfig, {
        "seed": 3, "n": 8, "chunk_size": 8, "mask": {"fraction": 0.0},
        "source": {"kind": "simulate", "n_pure": 12, "shape": [24, 24], "energy": [10, 30]}})
    plan = driver.plan_source(cfg)
    staging = tmp_path / "pairs.zarr.partial"
    driver._create_store(staging, cfg, plan, cfg.n, cfg.chunk_size)
    calls = []
    real = simulate.simulate_varied
    monkeypatch.setattr(simulate, "simulate_varied", lambda m, q, *a: calls.append(len(q)) or real(m, q, *a))
    driver.simulate_pure_chunk(str(staging), driver._cfg_json(cfg), 0, 12)
    assert calls == [12]  # kikuchipy's small Ni master holds one energy: one call for all
    group = zarr.open_group(str(staging), mode="r")
    quats, pcs, tilts, energies = pure_geometry(cfg, 0, 12)
    assert len(np.unique(energies)) == 12
    for j in range(12):  # one pattern at a time, each with its own master spec
        master = simulate.load_master(driver.master_spec(cfg.source.phase_sources()[0].master, energies[j]))
        want = bin_patterns(real(master, quats[j:j + 1], pcs[j:j + 1], tilts[j:j + 1, 0],
                                 tilts[j:j + 1, 1], (24, 24)), 1)[0]
        np.testing.assert_array_equal(group["pure"][j], want)
        assert group["pure_energy"][j] == np.float32(master.energy)
