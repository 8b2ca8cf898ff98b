"""``kdeconv train``: build the config (YAML + options) and call ``kdeconv.train.run``."""

from __future__ import annotations

import os
from typing import get_args

import click

# Spinning OpenMP threads collapse throughput when the cores are shared (measured 2.3 vs
# 17.9 samples/s with 2 threads on a busy 2-core machine); must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from kdeconv.cli._common import example, overwrite_option
from kdeconv.config import Device, Precision


@click.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help=f"Training YAML (example: {example('train.yaml')}). Optional with --resume (the run's own "
                   "is used).")
@click.option("--data", multiple=True, type=click.Path(), help="Pairs store; repeat for several.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (runs/NAME).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--init-checkpoint", default=None, metavar="PATH|default",
              help="Start from these weights (fine-tuning; 'default' = the shipped model). The model "
                   "and normalisation then come from that checkpoint.")
@click.option("--device", type=click.Choice(get_args(Device)), default=None,
              help="Where to train (default: the config's, auto = cuda if available).")
@click.option("--precision", type=click.Choice(get_args(Precision)), default=None,
              help="Autocast dtype (default: the config's; auto = bf16 on GPUs and on CPUs with "
                   "native bf16, else fp32).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop at this total step count (counts across resumes).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this much training wall time in total (counts across resumes).")
@overwrite_option
def train(config_path, data, out, resume, init_checkpoint, device, precision, max_steps, max_minutes,
          overwrite):
    """Train the dual-decoder U-Net on pairs stores; writes best.pt, last.pt, metrics.csv, curves.png.

    With --resume the budget may change (--max-steps, --max-minutes, --device, --precision, and
    early_stop_patience in --config); every other key --config sets must equal the run's.
    """
    from pathlib import Path

    from kdeconv.config import load_config
    from kdeconv.config.train import TrainConfig
    from kdeconv.errors import InputError
    from kdeconv.io.store import check_not_input, lock_output
    from kdeconv.train import run

    check_not_input(out, data)
    if Path(out).parent.is_dir():
        lock_output(out)  # one run writes a run folder at a time (released when the command ends)
    overrides = {"init_checkpoint": init_checkpoint, "device": device, "precision": precision,
                 "max_steps": max_steps, "max_minutes": max_minutes}
    if config_path is not None:
        config = load_config(TrainConfig, config_path, **overrides)
    elif resume:
        config = {k: v for k, v in overrides.items() if v is not None}
    else:
        raise InputError("--config is required (except with --resume)")
    run(config, data=list(data), out=out, resume=resume, overwrite=overwrite, echo=click.echo)
