"""Lazy package attributes, and stage modules that can be called.

``import kdeconv`` must not import torch, Dask or kikuchipy: packages name their public objects
in a table and import them on first use (PEP 562). A stage package is also callable:
``kdeconv.generate(config)`` is ``kdeconv.generate.run(config)`` and ``kdeconv.separate(data)``
is ``kdeconv.separate.separate(data)``, while ``kdeconv.separate.chunk`` stays a module.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["lazy_getattr", "make_callable", "StageModule"]


def lazy_getattr(module_name: str, table: dict[str, str]):
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) and returns its
    ``name``, caching it in the module."""
    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(sys.modules[module_name], name, value)
        return value

    return __getattr__


class StageModule(types.ModuleType):
    """A stage package: calling it calls its entry function (``__stage_entry__``)."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__stage_entry__)(*args, **kwargs)


def make_callable(module_name: str, entry: str) -> None:
    """Make the module ``module_name`` callable as its function ``entry``."""
    module = sys.modules[module_name]
    module.__stage_entry__ = entry
    module.__class__ = StageModule
