"""Small simulated Ni maps with known grains, and their map stores, for the pure-pattern tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdeconv.io.store import store_attrs


@dataclass
class SimulatedMap:
    counts: np.ndarray     # uint16 (ny, nx, sy, sx): raw detector counts
    fractions: np.ndarray  # (ny, nx, n_grains) beam-footprint fraction of every grain
    grain: np.ndarray      # int (ny, nx): the dominant grain
    minority: np.ndarray   # (ny, nx): 1 - the dominant fraction (all other grains together)
    pure: np.ndarray | None = None  # (n_grains, sy, sx): each grain's noise-free pattern in [0, 1]

    @property
    def n_grains(self) -> int:
        return self.fractions.shape[-1]


def simulated_map(nav_shape=(24, 24), n_grains=10, sig_shape=(48, 48), dose=1500.0, seed=0,
                  radius=1.0) -> SimulatedMap:
    """A Voronoi Ni polycrystal under a Gaussian beam: every pixel mixes the grains under its
    footprint in raw counts, on a detector background, with Poisson noise."""
    from orix.quaternion import Rotation

    from kdeconv.config.detector import DetectorSpec
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.metrics import minmax01
    from kdeconv.evaluate.polycrystal import footprint_samples, grain_fractions, random_seeds
    from kdeconv.evaluate.simulate_map import record_counts
    from kdeconv.simulate import nickel_master, random_quaternions, simulate_patterns

    seeds = random_seeds(np.random.default_rng([seed, 0]), n_grains, nav_shape)
    quats = random_quaternions(np.random.default_rng([seed, 1]), n_grains)
    offsets, weights = footprint_samples("gaussian", radius)
    fractions = grain_fractions(seeds, nav_shape, offsets, weights)
    detector = DetectorSpec(shape=sig_shape).to_kikuchipy()
    pure = minmax01(simulate_patterns(nickel_master(), Rotation(quats), detector)).astype(np.float32)
    mixtures = np.einsum("ng,gyx->nyx", fractions.reshape(-1, n_grains), pure).astype(np.float32)
    config = SimulateMapConfig(seed=seed, nav_shape=nav_shape, n_grains=n_grains,
                               realism={"dose": dose})
    recorded = record_counts(mixtures, config.realism, config.seed, np.arange(len(mixtures)))
    counts = recorded.astype(np.uint16).reshape(nav_shape + tuple(sig_shape))
    return SimulatedMap(counts=counts, fractions=fractions, grain=fractions.argmax(-1),
                        minority=1.0 - fractions.max(-1), pure=pure)


def write_map(path, patterns: np.ndarray, nav_chunk: tuple[int, ...]):
    """A map store laid out as `kdeconv ingest` writes it."""
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.attrs.update(store_attrs("map", source={"path": "synthetic", "format": "test"}))
    group.create_array("patterns", data=patterns, chunks=tuple(nav_chunk) + patterns.shape[-2:])
    return path


def interior_grains(sim: SimulatedMap, pure_below: float = 0.05) -> set[int]:
    """Grains with at least one pure pixel whose eight neighbours are pure pixels of it too."""
    ny, nx = sim.grain.shape
    pure = sim.minority < pure_below
    found = set()
    for y in range(ny):
        for x in range(nx):
            g = sim.grain[y, x]
            window = (slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
            if pure[window].all() and (sim.grain[window] == g).all():
                found.add(int(g))
    return found


def score(sim: SimulatedMap, indices: np.ndarray, pure_below: float = 0.05) -> tuple[float, float]:
    """(precision, coverage): the share of chosen patterns that are pure, and the share of the
    grains with an interior that got at least one chosen pattern."""
    minority = sim.minority.reshape(-1)[indices]
    precision = float((minority < pure_below).mean()) if len(indices) else 0.0
    wanted = interior_grains(sim, pure_below)
    got = set(int(g) for g in sim.grain.reshape(-1)[indices])
    coverage = len(wanted & got) / len(wanted) if wanted else 1.0
    return precision, coverage
