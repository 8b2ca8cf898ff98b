"""``kdeconv simulate-map``: a simulated polycrystal map (UP2) with its ground truth."""

from __future__ import annotations

import click

from kdeconv.cli._common import overwrite_option


@click.command("simulate-map")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML config (see configs/simulate_map.yaml).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: map.up2, truth.zarr, overview.png.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--nav-shape", type=(int, int), default=None, metavar="NY NX", help="Override the map size.")
@click.option("--n-grains", type=int, default=None, help="Override the number of grains.")
@overwrite_option
def simulate_map(config_path, out_dir, seed, nav_shape, n_grains, overwrite):
    """Simulate a Ni polycrystal map with two-grain mixtures near boundaries, and its ground truth."""
    from kdeconv.config import load_config
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import simulate_map as run

    config = load_config(SimulateMapConfig, config_path, seed=seed, nav_shape=nav_shape, n_grains=n_grains)
    run(config, out_dir, overwrite=overwrite, echo=click.echo)
