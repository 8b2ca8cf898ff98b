"""``kdeconv separate``: parse options, call ``kdeconv.separate.run``."""

from __future__ import annotations

import click

from kdeconv.cli._common import cluster_options, example, overwrite_option, parse_screen, screen_option
from kdeconv.cli.adapt import adapt_config_data, adapt_options


@click.command("separate")
@click.argument("map_store", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(), help="Separated store to write (.zarr).")
@click.option("--checkpoint", default=None, type=click.Path(),
              help="Model checkpoint (.pt). Default: the model shipped with kdeconv.")
@click.option("--model", "model", default=None,
              type=click.Choice(["auto", "default", "broad_looks", "small_patterns"]),
              help="Without --checkpoint, which shipped model: auto (default) takes the pattern "
                   "size's default (small_patterns below 96 px), separates a window of the map with "
                   "it and broad_looks and keeps the one whose B looks more like the map's "
                   "neighbouring patterns; or one by name: default, broad_looks (also trained on "
                   "kinematic band profiles), small_patterns (trained on patterns of 60-80 px).")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda"]),
              help="auto (CUDA when present, one GPU per worker), cpu or cuda.")
@click.option("--precision", default=None, type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="Autocast dtype: auto = bf16 on GPUs and on CPUs with AMX or AVX512-BF16, "
                   "else fp32.")
@click.option("--batch-size", default=None, type=int,
              help="Patterns per model call (default: the device's own; on a CPU 1 MiB of input, "
                   "18 patterns at 120x120 in fp32, 36 in bf16).")
@click.option("--background", default=None, type=click.Choice(["auto", "raw", "processed"]),
              help="auto (default): decide per map whether the patterns still carry the detector "
                   "background (raw: static + dynamic removal) or were corrected by vendor software.")
@click.option("--mask", default=None, type=click.Choice(["auto", "circle", "none"]),
              help="circle: zero the raw patterns outside the inscribed circle first, for a camera "
                   "that sees a round screen (dark corners); auto (default) does so when the map "
                   "shows such corners, and cuts to a screen smaller than the pattern or off its "
                   "centre when it finds one (see --screen).")
@screen_option
@click.option("--working-size", default=None, type=click.IntRange(min=16),
              help="Shorter side (px) the model sees; A and B are resampled back (default: the "
                   "model's own range decides).")
@click.option("--residual-pass", default=None,
              help="Minority weight from which B is separated again from the residual of C after A "
                   "(default 0.2; averaged with the first B below 0.3; from 0.3 A is made again "
                   "from what the new B leaves), or 'off' for one pass.")
@click.option("--neighbour-fit/--no-neighbour-fit", "neighbour_fit", default=None,
              help="Near boundaries of a 2-D map, explain each pattern as the two grains whose "
                   "interiors lie within 3 scan steps; where a pair does, B is the second grain's "
                   "interior mean and the weights are the fit's (default: on).")
@click.option("--neighbour-radius", default=None, type=click.IntRange(1, 16),
              help="Scan steps within which the fit looks for a pixel's two grains' interiors "
                   "(default 3); wider for a map whose step is fine against the beam's footprint.")
@click.option("--neighbour-far-radius", default=None, type=click.IntRange(0, 32),
              help="How far the fit looks where fewer than two grains are within --neighbour-radius "
                   "(default 6; 0: no farther).")
@click.option("--config", "config_path", default=None, type=click.Path(),
              help=f"YAML config (example: {example('separate.yaml')}); options given here win.")
@click.option("--adapt", "adapt_first", is_flag=True,
              help="First fine-tune the model (--checkpoint, or the shipped adapt base) on this map's own "
                   "pure patterns into OUT.adapt/, then separate with it.")
@click.option("--adapt-config", default=None, type=click.Path(dir_okay=False),
              help="YAML for --adapt (configs/adapt.yaml); the adapt options given here win.")
@adapt_options
@overwrite_option
@cluster_options
def separate(map_store, out, checkpoint, model, device, precision, batch_size, background, mask, screen,
             working_size, residual_pass, neighbour_fit, neighbour_radius, neighbour_far_radius, config_path,
             adapt_first, adapt_config, base, pure, references, reference_labels, minutes, max_steps, seed,
             overwrite, cluster):
    """Separate every pattern of MAP_STORE into A, B and weights (resumable: rerun to continue).

    Writes OUT with arrays A, B (shape and dtype of the map's patterns) and weights (wA >= wB),
    plus OUT.weights.png (wB over the scan) and OUT.panels.png (C | A | B of the most mixed).

    Before the model, patterns that still carry the detector background lose their static (map
    mean) and dynamic (Gaussian blur) background as in kikuchipy; vendor-processed patterns are
    left as they are (--background auto decides per map and says which). Patterns of any size
    are resampled to the model's working size and A, B back to the map's. An interrupted run
    resumes from OUT.partial when rerun with the same command; --overwrite starts again.
    """
    from kdeconv.cluster import summary_line
    from kdeconv.config import load_config
    from kdeconv.config.separate import SeparateConfig
    from kdeconv.separate.driver import run

    config = load_config(SeparateConfig, config_path, checkpoint=checkpoint, device=device,
                         precision=precision, batch_size=batch_size, working_size=working_size)
    if model is not None:
        if (config.checkpoint is not None or adapt_first) and model != "auto":
            from kdeconv.errors import InputError

            raise InputError(f"--model {model} names a shipped model to separate with: give it, or "
                             "--checkpoint or --adapt, not both")
        config.model = model
    if background is not None:
        config.background.mode = background
    if mask is not None:
        config.background.mask = mask
    if screen is not None:
        config.background.screen = parse_screen(screen)
    if residual_pass is not None:
        config = config.model_copy(update={"residual_pass": _residual_pass(residual_pass)})
    fit = {key: value for key, value in (("enabled", neighbour_fit), ("radius", neighbour_radius),
                                          ("far_radius", neighbour_far_radius)) if value is not None}
    if fit:
        config.neighbour_fit = {**config.neighbour_fit.model_dump(), **fit}
    if adapt_first:
        config.checkpoint = str(_adapt(map_store, out, config, adapt_config, base, pure, references,
                                       reference_labels, minutes, max_steps, seed, overwrite, cluster))
    elif any(v is not None for v in (adapt_config, base, pure, references, reference_labels, minutes,
                                     max_steps, seed)):
        from kdeconv.errors import InputError

        raise InputError("--adapt-config, --base, --pure, --references, --minutes, --max-steps and "
                         "--seed need --adapt")
    try:
        result = run(config, map_store=map_store, out=out, overwrite=overwrite, cluster=cluster,
                     progress=None, echo=click.echo)
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


def _adapt(map_store, out, config, adapt_config, base, pure, references, reference_labels, minutes,
           max_steps, seed, overwrite, cluster):
    """Run adapt into OUT.adapt/ (kept and reused by a rerun, resumed when it was interrupted)
    and return its best.pt."""
    from pathlib import Path

    from kdeconv.adapt import AdaptResult, run
    from kdeconv.cluster import open_client
    from kdeconv.errors import InputError

    if base is not None and config.checkpoint is not None:
        raise InputError("give the model to adapt with --checkpoint or --base, not both")
    run_dir = Path(str(out).rstrip("/") + ".adapt")
    best = run_dir / "best.pt"
    if best.is_file() and not overwrite:
        AdaptResult.from_run_folder(run_dir, map_store)  # adapted to this map, or refused
        click.echo(f"adapt: reusing {best} (--overwrite adapts again)")
        return best
    from kdeconv.config.adapt import settings_from_separate

    inherited = settings_from_separate(config)
    if base is not None:
        inherited["base"] = base
    background = inherited.pop("background")
    data = adapt_config_data(adapt_config, map=map_store, out=str(run_dir), pure=pure, references=references,
                             reference_labels=reference_labels, minutes=minutes, max_steps=max_steps,
                             seed=seed, overwrite=overwrite, **inherited)
    data["background"] = background  # separate's recipe, whatever the adapt YAML says
    with open_client(cluster, echo=click.echo) as client:
        return run(data, client=client, echo=click.echo).best


def _residual_pass(value: str) -> float | None:
    """``--residual-pass``: "off" (None) or a minority weight in [0, 0.5]."""
    from kdeconv.errors import InputError

    if value.strip().lower() == "off":
        return None
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if not 0.0 <= weight <= 0.5:
        raise InputError(f"--residual-pass {value!r} is neither a minority weight in [0, 0.5] nor 'off'")
    return weight
