"""Stage ``separate``: every pattern of a map -> (A, B, weights), chunk by chunk on Dask.

``chunk`` holds the pure per-chunk kernel, ``worker`` the per-process model cache, ``driver``
the resumable ``map_blocks`` run over a map store, ``report`` the PNGs beside the output.
"""
