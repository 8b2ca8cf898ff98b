"""Stage 1 and the end of the pipeline: vendor files in, Zarr stores, vendor files out.

``sources`` recognises an input, ``formats`` holds one module per file format (chosen from a
registry), ``ingest``/``export`` are the two stages, ``store``/``resume`` the store layout and
the resume protocol.

``write_up2`` / ``write_up1`` write EDAX binary files (used for simulated maps and test files).
"""

from kdeconv.io.formats.edax_binary import write_up1, write_up2

__all__ = ["write_up1", "write_up2"]
