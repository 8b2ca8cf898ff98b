"""``kdeconv adapt``: fine-tune a model on a map's own pure patterns."""

from __future__ import annotations

import os

import click

from kdeconv.cli._common import cluster_options, example, overwrite_option, parse_screen, screen_option

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see kdeconv.cli.train


def adapt_options(func):
    """Options ``adapt`` and ``separate --adapt`` share."""
    for option in reversed([
        click.option("--base", default=None, type=click.Path(dir_okay=False),
                     help="Checkpoint to start from (default: the shipped multi-phase adapt base; "
                          "the small-pattern model for patterns below 96 px)."),
        click.option("--pure", default=None, metavar="auto|FILE",
                     help="Pure patterns: auto (found in grain interiors, the default) or a file of "
                          "flat indices, (row, col) pairs or a boolean mask image of the map."),
        click.option("--references", default=None, type=click.Path(),
                     help="Pure reference patterns instead: a folder of images (sub-folders are labels, "
                          "e.g. bcc/ fcc/) or another map store."),
        click.option("--reference-labels", default=None, type=click.Path(dir_okay=False),
                     help="One label per reference pattern (for a store of references)."),
        click.option("--minutes", default=None, type=click.FloatRange(min=0, min_open=True),
                     help="Fine-tuning budget in minutes [10]."),
        click.option("--max-steps", default=None, type=click.IntRange(min=1), help="Step budget [3000]."),
        click.option("--seed", default=None, type=click.IntRange(min=0), help="Seed [0]."),
    ]):
        func = option(func)
    return func


def adapt_config_data(config_path, **options) -> dict:
    """The adapt config: YAML (if any) with the options given on the command line on top."""
    from kdeconv.config import load_config
    from kdeconv.config.adapt import AdaptConfig

    overrides = {k: v for k, v in options.items() if v is not None}
    return load_config(AdaptConfig, config_path, **overrides).model_dump(mode="json")


@click.command("adapt")
@click.argument("map_store", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (runs/NAME).")
@adapt_options
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--precision", default=None, type=click.Choice(["auto", "fp32", "bf16", "fp16"]))
@click.option("--background", default=None, type=click.Choice(["auto", "raw", "processed"]),
              help="As separate: auto decides per map.")
@click.option("--mask", default=None, type=click.Choice(["auto", "circle", "none"]),
              help="As separate: circle masks the raw patterns first (a round screen's dark corners); "
                   "auto also cuts to a smaller or off-centre screen it finds.")
@screen_option
@click.option("--working-size", default=None, type=click.IntRange(min=16),
              help="Shorter side the model sees (default: the model's own range).")
@click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False),
              help=f"YAML config (example: {example('adapt.yaml')}); options given here win.")
@overwrite_option
@cluster_options
def adapt(map_store, out, base, pure, references, reference_labels, minutes, max_steps, seed, device,
          precision, background, mask, screen, working_size, config_path, overwrite, cluster):
    """Fine-tune the model on MAP_STORE's own pure patterns (its detector, its phases), for minutes.

    Writes OUT/best.pt (use it with `kdeconv separate --checkpoint OUT/best.pt`), OUT/last.pt and
    OUT/adapt.json (base model, pure patterns and grains chosen, pairs, held-out scores before and
    after, claim rule, seconds).
    """
    from kdeconv.adapt import run
    from kdeconv.cluster import open_client

    data = adapt_config_data(config_path, map=map_store, out=out, base=base, pure=pure,
                             references=references, reference_labels=reference_labels,
                             minutes=minutes, max_steps=max_steps, seed=seed, device=device,
                             precision=precision, working_size=working_size,
                             overwrite=overwrite or None)
    if background is not None:
        data["background"]["mode"] = background
    if mask is not None:
        data["background"]["mask"] = mask
    if screen is not None:
        data["background"]["screen"] = parse_screen(screen)
    with open_client(cluster, echo=click.echo) as client:
        run(data, client=client, echo=click.echo)
