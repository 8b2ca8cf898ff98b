"""``kdeconv`` command line. It only parses options and calls the stage drivers.

Commands are imported lazily so ``kdeconv --help`` stays fast (torch and kikuchipy load late).
Errors: ``InputError`` anywhere -> one line on stderr and exit 2; a fault of the machine (full
disk, no permission, read-only file system; ``EnvironmentFault`` or such an ``OSError``, also
raised in a Dask task) -> one line and exit 1; anything else -> a traceback and exit 1.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from kdeconv import __version__
from kdeconv.errors import EnvironmentFault, InputError, environment_fault

# name -> (module, attribute, one-line help shown by `kdeconv --help`)
COMMANDS = {
    "ingest": ("kdeconv.cli.ingest", "ingest", "Read a vendor file or image folder into a map store."),
    "export": ("kdeconv.cli.export", "export", "Write a store array to h5ebsd, UP1/UP2 or TIFF."),
    "generate": ("kdeconv.cli.generate", "generate", "Make synthetic (C, A, B) training pairs."),
    "train": ("kdeconv.cli.train", "train", "Train the dual-decoder U-Net on a pairs store."),
    "separate": ("kdeconv.cli.separate", "separate",
                 "Separate every pattern of a map into A, B and weights."),
    "adapt": ("kdeconv.cli.adapt", "adapt", "Fine-tune a model on a map's own pure patterns (minutes)."),
    "evaluate": ("kdeconv.cli.evaluate", "evaluate", "Score separated patterns against ground truth."),
    "simulate-map": ("kdeconv.cli.simulate_map", "simulate_map",
                     "Simulate a polycrystal map with boundary mixtures and its ground truth."),
}


class KdeconvGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as err:
            if err.name == module:  # command not built yet; a broken import elsewhere must surface
                return None
            raise

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()
                if self.get_command(ctx, name) is not None]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        from kdeconv.cluster import ctrl_c_not_lost

        try:
            with ctrl_c_not_lost():
                return super().invoke(ctx)
        except InputError as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("Interrupted: rerun the same command to resume where possible.", err=True)
            ctx.exit(130)
        except EnvironmentFault as err:
            click.echo(f"Error: {err}", err=True)
            ctx.exit(1)
        except Exception as err:
            fault = _environment_fault(err)
            if fault is None and type(err).__name__ == "KilledWorker":
                fault = ("a Dask worker died while running this command (out of memory?): rerun it; "
                         "separate and generate resume from their finished chunks")
            if fault is None:
                raise
            click.echo(f"Error: {fault}", err=True)
            ctx.exit(1)
        finally:
            _release_outputs()


def _environment_fault(err: BaseException):
    """``err`` as a one-line fault of the machine (full disk ...), or None for a real bug."""
    output, nbytes = None, None
    store = sys.modules.get("kdeconv.io.store")
    if store is not None and store.active_output() is not None:
        output, nbytes = store.active_output()
    return environment_fault(err, output=output, needed_bytes=nbytes)


def _release_outputs() -> None:
    store = sys.modules.get("kdeconv.io.store")
    if store is not None:
        store.release_all_outputs()


# The example configs ship inside the package, so this path exists after pip install.
EXAMPLE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@click.group(cls=KdeconvGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=f"Example configs (one per command): {EXAMPLE_CONFIGS}")
@click.version_option(__version__, prog_name="kdeconv")
def main():
    """kdeconv: separate mixed EBSD Kikuchi patterns (C = wA*A + wB*B) map-wide on Dask.

    Pipeline: ingest -> generate -> train -> separate -> export / evaluate. In Python:
    kdeconv.separate(signal), kdeconv.<stage>(config).
    """


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
