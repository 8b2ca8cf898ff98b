"""Stage 1 and the end of the pipeline: vendor files in, Zarr stores, vendor files out."""
