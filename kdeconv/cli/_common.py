"""Options shared by several commands."""

from __future__ import annotations

import functools

import click

from kdeconv.cli import EXAMPLE_CONFIGS
from kdeconv.config import validate_config
from kdeconv.config.cluster import ClusterConfig


def example(name: str) -> str:
    """The path of the shipped example config ``name``, for help texts."""
    return str(EXAMPLE_CONFIGS / name)


def cluster_options(func):
    """Add the CLUSTER options and pass ``cluster=ClusterConfig(...)`` to the command."""

    @click.option("--scheduler-address", default=None, metavar="ADDR",
                  help="Attach to a running Dask scheduler (tcp://host:8786).")
    @click.option("--scheduler-file", default=None, type=click.Path(dir_okay=False),
                  help="Attach via a scheduler file (dask-jobqueue, `dask scheduler --scheduler-file`).")
    @click.option("--workers", default=None, type=int, help="LocalCluster worker processes.")
    @click.option("--threads-per-worker", default=None, type=int, help="LocalCluster threads per worker.")
    @click.option("--connect-timeout", default=None, type=float, metavar="SECONDS",
                  help="How long a remote scheduler may take to answer [10].")
    @click.option("--worker-timeout", default=None, type=float, metavar="SECONDS",
                  help="How long a remote scheduler may take to have a worker [120].")
    @functools.wraps(func)
    def wrapper(*args, scheduler_address, scheduler_file, workers, threads_per_worker, connect_timeout,
                worker_timeout, **kwargs):
        options = {"scheduler_address": scheduler_address, "scheduler_file": scheduler_file,
                   "workers": workers, "threads_per_worker": threads_per_worker,
                   "connect_timeout": connect_timeout, "worker_timeout": worker_timeout}
        options = {k: v for k, v in options.items() if v is not None}
        cluster = validate_config(ClusterConfig, options, "cluster options", options)
        return func(*args, cluster=cluster, **kwargs)

    return wrapper


overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Replace an existing output instead of refusing.")


screen_option = click.option(
    "--screen", default=None, metavar="TOP,LEFT,SIDE",
    help="A round screen smaller than the pattern or off its centre: the square around it in "
         "pixels. Patterns are cut to it and masked to its circle; A and B are put back in place, "
         "zero around it (default: found by --mask auto).")


def parse_screen(value: str | None) -> tuple[int, int, int] | None:
    """``--screen TOP,LEFT,SIDE`` -> three ints (None when not given)."""
    from kdeconv.errors import InputError

    if value is None:
        return None
    try:
        box = tuple(int(v) for v in value.split(","))
    except ValueError:
        box = ()
    if len(box) != 3 or min(box) < 0:
        raise InputError(f"--screen {value!r} is not TOP,LEFT,SIDE (three pixel counts, e.g. 10,30,100)")
    return box
