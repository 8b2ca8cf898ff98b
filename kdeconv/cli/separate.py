"""``kdeconv separate``: parse options, call ``kdeconv.separate.driver.separate_map``."""

from __future__ import annotations

import click

from kdeconv.cli._common import cluster_options, overwrite_option


@click.command("separate")
@click.argument("map_store", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(), help="Separated store to write (.zarr).")
@click.option("--checkpoint", default=None, type=click.Path(),
              help="Model checkpoint (.pt). Default: the model shipped with kdeconv.")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]),
              help="auto (CUDA when present, one GPU per worker), cpu or cuda.")
@click.option("--precision", default=None, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="Autocast dtype: auto = bf16 on GPUs and on CPUs with native bf16, else fp32.")
@click.option("--batch-size", default=None, type=int, help="Patterns per model call (default 64).")
@click.option("--config", "config_path", default=None, type=click.Path(),
              help="YAML config (see configs/separate.yaml); options given here win.")
@overwrite_option
@cluster_options
def separate(map_store, out, checkpoint, device, precision, batch_size, config_path, overwrite, cluster):
    """Separate every pattern of MAP_STORE into A, B and weights (resumable: rerun to continue).

    Writes OUT with arrays A, B (shape and dtype of the map's patterns) and weights (wA >= wB),
    plus OUT.weights.png (wB over the scan) and OUT.panels.png (C | A | B of the most mixed).

    Before the model, each pattern loses its static (map mean) and dynamic (Gaussian blur)
    background as in kikuchipy; see configs/separate.yaml. Any pattern size of at least 16 px a
    side works: the model pads each side to its multiple and crops back. An interrupted run
    resumes from OUT.partial when rerun with the same command; --overwrite starts again.
    """
    from kdeconv.cluster import summary_line
    from kdeconv.config import load_config
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.driver import separate_map

    config = load_config(SeparateConfig, config_path, checkpoint=checkpoint, device=device,
                         precision=precision, batch_size=batch_size)
    try:
        result = separate_map(map_store, out, config, cluster, overwrite=overwrite, echo=click.echo)
    except Exception as err:  # a dead worker is not a bug here: say how to go on (exit 1)
        if type(err).__name__ != "KilledWorker":
            raise
        raise click.ClickException(f"a worker died while separating ({err.__class__.__name__}; out of "
                                   "memory? try a smaller --batch-size): rerun the same command "
                                   "to resume from the finished chunks") from None
    if result.chunks_skipped:
        click.echo(f"resumed: {result.chunks_skipped} of {result.chunks} chunks were already done")
    for path in result.report_files:
        click.echo(f"wrote {path}")
    line = summary_line(f"separate -> {result.out}", result.patterns, result.seconds)
    if result.blank_frames:
        line += f"; {result.blank_frames} blank frames left empty (see the store's 'blank' array)"
    click.echo(line)
