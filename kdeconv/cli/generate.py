"""``kdeconv generate``: synthetic (C, A, B) training pairs into a pairs store."""

from __future__ import annotations

from pathlib import Path

import click

from kdeconv.cli._common import cluster_options, example, overwrite_option


@click.command("generate")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help=f"YAML config (example: {example('generate_debug.yaml')}).")
@click.option("--out", required=True, type=click.Path(), help="Pairs store to write (Zarr).")
@click.option("--n", type=int, default=None, help="Number of pairs (overrides the config). A larger "
              "--n on an existing store with the same config appends.")
@click.option("--seed", type=int, default=None, help="Seed (overrides the config).")
@click.option("--chunk-size", type=int, default=None, help="Pairs per task and per Zarr chunk.")
@click.option("--no-mask", is_flag=True, help="No circular mask on any pair (mask.fraction = 0).")
@click.option("--debug", is_flag=True, help="Also write PNG panels of a few pairs to OUT.debug/.")
@overwrite_option
@cluster_options
def generate(config_path, out, n, seed, chunk_size, no_mask, debug, overwrite, cluster):
    """Make synthetic training pairs C = wA*A + wB*B (with optional realism) on Dask."""
    from kdeconv.config import load_config
    from kdeconv.config.generate import GenerateConfig
    from kdeconv.generate.driver import run, write_debug_panels

    cfg = load_config(GenerateConfig, config_path, n=n, seed=seed, chunk_size=chunk_size)
    if no_mask:
        cfg = cfg.model_copy(update={"mask": cfg.mask.model_copy(update={"fraction": 0.0})})
    run(cfg, out=out, overwrite=overwrite, cluster=cluster, progress=None, echo=click.echo)
    if debug:
        folder = Path(str(out) + ".debug")
        paths = write_debug_panels(out, folder)
        click.echo(f"debug panels: {len(paths)} PNG in {folder}")
