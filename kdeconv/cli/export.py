"""``kdeconv export STORE.zarr OUT.(h5|up2|up1|tif)``."""

from __future__ import annotations

import click

from kdeconv.cli._common import cluster_options, overwrite_option


@click.command(help="Write a store array to kikuchipy h5ebsd (.h5), EDAX UP2/UP1 (.up2/.up1) or "
                    "multi-page TIFF (.tif), losslessly; the format follows OUT's extension. "
                    "UP1/UP2 are written by the cluster's workers; .h5 and .tif by this process, "
                    "one chunk at a time (HDF5 and TIFF writers are single-writer).")
@click.argument("store", metavar="STORE.zarr", type=click.Path())
@click.argument("output", metavar="OUT", type=click.Path())
@click.option("--array", "array_name", default="patterns", show_default=True,
              help="Array to export: patterns (map store), A or B (separated store).")
@overwrite_option
@cluster_options
def export(store, output, array_name, overwrite, cluster):
    from kdeconv.config import load_config
    from kdeconv.config.export import ExportConfig
    from kdeconv.io.export import export as run_export

    config = load_config(ExportConfig, None, store=store, output=output, array=array_name,
                         overwrite=overwrite or None)
    run_export(config, cluster, progress=None, echo=click.echo)
