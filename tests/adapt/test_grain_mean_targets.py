"""adapt's grain-mean targets: A and B of each pair are the mean of their pattern's grain, looked
up through the pool's order whatever the order of the listed indices."""

from __future__ import annotations

import numpy as np

from kdeconv.mixing import from_uint16


def test_pairs_take_the_grain_mean_of_each_listed_pattern(tmp_path, dask_processes):
    from distributed import Client
    from pure_maps import write_map

    from kdeconv.adapt.driver import _grain_mean_targets, _pairs_config, _prepared_pure
    from kdeconv.config import validate_config
    from kdeconv.config.adapt import AdaptConfig
    from kdeconv.config.generate import GenerateConfig
    from kdeconv.generate.driver import run_generate

    rng = np.random.default_rng(0)
    y, x = np.mgrid[:32, :32] / 32
    grains_of_map = np.repeat(np.arange(3), 4)  # 3 grains of 4 patterns
    clean = [np.exp(-((x * np.cos(t) + y * np.sin(t) - 0.5) / 0.08) ** 2) for t in (0.3, 1.2, 2.4)]
    patterns = np.stack([1000 + 800 * clean[g] for g in grains_of_map]) + rng.normal(0, 60, (12, 32, 32))
    write_map(tmp_path / "map.zarr", patterns.astype(np.uint16), (6,))

    indices = np.array([7, 2, 11, 0, 5, 9, 3, 10, 1, 6, 8, 4])  # listed out of map order
    grains = grains_of_map[indices]
    cfg = AdaptConfig(map="map.zarr", out="run", flips=False, targets="grain_mean")
    pairs = _pairs_config(cfg, str(tmp_path / "map.zarr"), indices, grains, 48, 1,
                          {"background": "processed"})
    prepared = _prepared_pure(GenerateConfig.model_validate(pairs))
    path = _grain_mean_targets(prepared, grains, tmp_path / "targets.zarr", None)
    pairs["source"]["targets"] = str(path)
    gen = validate_config(GenerateConfig, pairs)
    with Client(scheduler_file=str(dask_processes[1]), timeout="30s") as client:
        run_generate(gen, tmp_path / "pairs.zarr", client, echo=lambda *_: None)

    import zarr

    targets = zarr.open_array(str(path), mode="r")[...]
    store = zarr.open_group(str(tmp_path / "pairs.zarr"), mode="r")
    position = {int(i): k for k, i in enumerate(indices)}  # map index -> row of the targets
    for name, index in (("A", "index_a"), ("B", "index_b")):
        rows = [position[int(i)] for i in store[index][...]]
        np.testing.assert_allclose(from_uint16(store[name][...]), targets[rows], atol=1e-5)
    for grain in range(3):  # one target per grain: the mean of its 4 patterns
        rows = np.flatnonzero(grains == grain)
        assert all(np.array_equal(targets[rows[0]], targets[r]) for r in rows)
    assert (grains_of_map[store["index_a"][...]] != grains_of_map[store["index_b"][...]]).all()
