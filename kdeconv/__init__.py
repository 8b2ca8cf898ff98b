"""kdeconv: separate mixed EBSD Kikuchi patterns into their two constituents.

In Python, every stage is one call (the CLI calls the same functions)::

    import kdeconv
    result = kdeconv.separate(signal)          # a kikuchipy EBSD signal, an array or a path
    result.B.hough_indexing(...)               # A and B are EBSD signals with the input's detector

    kdeconv.ingest(config)                     # config: the stage's pydantic model, a dict or a YAML path
    kdeconv.generate(config, out="pairs.zarr")
    kdeconv.train(config, data=["pairs.zarr"], out="runs/a")
    kdeconv.adapt(config)
    kdeconv.separate.run(config, map_store="map.zarr", out="separated.zarr")
    kdeconv.evaluate(config, separated="separated.zarr", truth="truth.zarr", out="report")
    kdeconv.export(config)

Each returns a small dataclass (outputs, counts, seconds). Nothing heavy (torch, Dask,
kikuchipy) is imported until a function needs it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kdeconv")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

from kdeconv._exports import lazy_getattr
from kdeconv.errors import InputError

# Stage packages (callable: kdeconv.generate(config) is kdeconv.generate.run(config)).
_STAGE_PACKAGES = ("separate", "generate", "train", "adapt", "evaluate")
_NAMES = {
    "ingest": "kdeconv.io.ingest",
    "export": "kdeconv.io.export",
    "Separation": "kdeconv.separate.separation",
    "DetectorSpec": "kdeconv.config.detector",
    "ClaimRule": "kdeconv.config.claim",
    "load_config": "kdeconv.config",
}

__all__ = ["__version__", "InputError", *_STAGE_PACKAGES, *_NAMES]

_lazy = lazy_getattr(__name__, _NAMES)


def __getattr__(name: str):
    if name in _STAGE_PACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    return _lazy(name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
