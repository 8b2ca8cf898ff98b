"""Ingest's write tasks: runs of whole store chunks, contiguous, covering the map once."""

import numpy as np
import pytest

from kdeconv.io.ingest import task_regions
from kdeconv.io.store import nav_chunks


@pytest.mark.parametrize("nav,sig,chunk_mb,task_mb", [
    ((1000,), (60, 60), 1, 3),          # line scan
    ((37, 41), (60, 60), 1, 3),         # chunks of whole rows
    ((5, 900), (120, 120), 4, 9),       # pieces of long rows
    ((5, 900), (120, 120), 4, 1),       # a task smaller than a chunk: one chunk each
])
def test_regions_are_whole_chunks_covering_the_map_once(nav, sig, chunk_mb, task_mb):
    chunks = nav_chunks(nav, sig, 2, chunk_mb)[:len(nav)]
    regions = task_regions(nav, chunks, int(np.prod(sig)) * 2, task_mb)
    seen = np.zeros(nav, int)
    for region in regions:
        for (start, stop), c, n in zip(region, chunks, nav):
            assert start % c == 0 and (stop % c == 0 or stop == n)  # whole store chunks
        seen[tuple(slice(a, b) for a, b in region)] += 1
        if len(nav) == 2 and region[1] != (0, nav[1]):
            assert region[0][1] - region[0][0] == 1  # a part of a row: one row
    assert (seen == 1).all()
    if task_mb >= 2 * chunk_mb:
        assert len(regions) < int(np.prod([-(-n // c) for n, c in zip(nav, chunks)]))  # fewer tasks
