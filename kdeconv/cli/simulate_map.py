"""``kdeconv simulate-map``: a simulated polycrystal map (UP2/UP1) with its ground truth."""

from __future__ import annotations

import click

from kdeconv.cli._common import example, overwrite_option


@click.command("simulate-map")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"YAML config (example: {example('simulate_map.yaml')}).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: map.up2 (map.up1 when 8-bit), truth.zarr, overview.png.")
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--nav-shape", type=(int, int), default=None, metavar="NY NX", help="Override the map size.")
@click.option("--n-grains", type=int, default=None, help="Override the number of grains.")
@click.option("--phase", default=None,
              help="One phase instead of the config's: ni (kikuchipy's Ni) or a library phase "
                   "(fe_alpha, ...).")
@click.option("--pattern-shape", type=(int, int), default=None, metavar="SY SX",
              help="Override the detector's pattern shape.")
@click.option("--energy", type=float, default=None, help="Override the beam energy (keV).")
@click.option("--style", type=click.Choice(["raw", "processed"]), default=None,
              help="raw: camera counts; processed: the vendor-exported look (background removed, "
                   "masked, 8-bit).")
@overwrite_option
def simulate_map(config_path, out_dir, seed, nav_shape, n_grains, phase, pattern_shape, energy, style,
                 overwrite):
    """Simulate a polycrystal map (one or several phases) with two-grain mixtures near boundaries,
    and its ground truth."""
    from kdeconv.config import load_config, validate_config
    from kdeconv.config.simulate_map import SimulateMapConfig
    from kdeconv.evaluate.simulate_map import simulate_map as run

    config = load_config(SimulateMapConfig, config_path, seed=seed, nav_shape=nav_shape, n_grains=n_grains,
                         energy=energy, style=style)
    if phase is not None or pattern_shape is not None:
        data = config.model_dump(mode="json", exclude_unset=True)
        if phase is not None:
            data.update(phase=phase, phases=None)
        if pattern_shape is not None:
            data["detector"] = {**data.get("detector", {}), "shape": list(pattern_shape)}
        config = validate_config(SimulateMapConfig, data, "command-line options")
    run(config, out_dir, overwrite=overwrite, echo=click.echo)
