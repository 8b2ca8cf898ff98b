"""Stage 1 and the end of the pipeline: vendor files in, Zarr stores, vendor files out.

``write_up2`` / ``write_up1`` write EDAX binary files (used for simulated maps and test files).
"""

from kdeconv.io.edax import write_up1, write_up2

__all__ = ["write_up1", "write_up2"]
