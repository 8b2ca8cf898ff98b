"""``kdeconv evaluate``: pixel metrics and orientation recovery against ground truth."""

from __future__ import annotations

import click

from kdeconv.cli._common import example, overwrite_option


@click.command("evaluate")
@click.argument("separated", type=click.Path())
@click.option("--truth", "truth", required=True, type=click.Path(),
              help="Truth store: 'truth' from simulate-map, or a 'pairs' store.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Report folder: metrics.json, report.md, PNGs.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"YAML config (example: {example('evaluate.yaml')}).")
@click.option("--no-index", is_flag=True, help="Pixel metrics only (skip Hough indexing and baselines).")
@click.option("--no-baselines", is_flag=True, help="Skip the raw-C and residual-subtraction baselines.")
@overwrite_option
def evaluate(separated, truth, out_dir, config_path, no_index, no_baselines, overwrite):
    """Score SEPARATED (a separated store) against ground truth; writes metrics.json and report.md."""
    from kdeconv.config import load_config
    from kdeconv.config.evaluate import EvaluateConfig
    from kdeconv.evaluate.driver import run

    config = load_config(EvaluateConfig, config_path, index=False if no_index else None,
                         baselines=False if no_baselines else None)
    run(config, separated=separated, truth=truth, out=out_dir, overwrite=overwrite, echo=click.echo,
        warn=lambda msg: click.echo(msg, err=True))
