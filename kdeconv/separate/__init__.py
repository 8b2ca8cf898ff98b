"""Stage ``separate``: every pattern of a map -> (A, B, weights).

``kdeconv.separate(data, *, checkpoint=None, device="auto", precision="auto", background="auto",
client=None, working_size=None, progress=True) -> Separation`` separates patterns held in Python:
a kikuchipy ``EBSD``/``LazyEBSD`` signal, a numpy or Dask array ``(..., sy, sx)``, or a path (a
map store or a vendor file). See ``kdeconv.separate.separation.separate``.

``kdeconv.separate.run(config, *, map_store, out)`` is the stage from store to store, resumable,
chunk by chunk on Dask (what ``kdeconv separate`` runs).

Modules: ``chunk`` holds the pure per-chunk kernel, ``inputs`` plans the model input (background,
working size), ``worker`` the per-process model cache, ``driver`` the resumable ``map_blocks`` run
over a map store, ``separation`` the Python entry point, ``report`` the PNGs beside the output.
"""

from kdeconv._exports import lazy_getattr, make_callable

__all__ = ["separate", "Separation", "run", "SeparateResult"]

__getattr__ = lazy_getattr(__name__, {"separate": "kdeconv.separate.separation",
                                      "Separation": "kdeconv.separate.separation",
                                      "run": "kdeconv.separate.driver",
                                      "SeparateResult": "kdeconv.separate.driver"})

make_callable(__name__, "separate")
