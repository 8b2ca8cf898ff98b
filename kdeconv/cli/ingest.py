"""``kdeconv ingest INPUT OUT.zarr``."""

from __future__ import annotations

import click

from kdeconv.cli._common import cluster_options, example, overwrite_option


@click.command(help="Read a vendor file (UP1/UP2, .ebsp, NORDIF .dat, h5ebsd, .h5oina, EMsoft .h5), "
                    "a multi-page TIFF or a folder of PNG/TIFF patterns into a map store.")
@click.argument("input_path", metavar="INPUT", type=click.Path())
@click.argument("output", metavar="OUT.zarr", type=click.Path())
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help=f"YAML with defaults (example: {example('ingest.yaml')}); options given here win.")
@click.option("--chunk-mb", default=None, type=float, help="Target MB per chunk [32].")
@click.option("--nav-shape", default=None, type=(int, int), metavar="NY NX",
              help="Map grid for image inputs (default: a line scan), or to regrid a line scan.")
@click.option("--dtype", default=None, type=click.Choice(["uint8", "uint16", "float32"]),
              help="Refuse the input unless its patterns have this dtype (e.g. a 16-bit camera).")
@click.option("--allow-size-mismatch", is_flag=True, default=None,
              help="Read a vendor file longer than its header says as the header says (warns) "
                   "instead of refusing it.")
@overwrite_option
@cluster_options
def ingest(input_path, output, config_path, chunk_mb, nav_shape, dtype, allow_size_mismatch,
           overwrite, cluster):
    from kdeconv.config import load_config
    from kdeconv.config.ingest import IngestConfig
    from kdeconv.io.ingest import ingest as run_ingest

    config = load_config(IngestConfig, config_path, input=input_path, output=output,
                         chunk_mb=chunk_mb, nav_shape=nav_shape, dtype=dtype,
                         allow_size_mismatch=allow_size_mismatch or None, overwrite=overwrite or None)
    run_ingest(config, cluster, progress=None, echo=click.echo)
