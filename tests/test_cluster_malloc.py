"""kdeconv's workers take chunk-sized arrays from the heap, not from a fresh mmap per array.

Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which freezes glibc's mmap threshold at
128 kB; every chunk-sized numpy temporary then faults in new pages (kernels 2-5x slower).
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def mapped_bytes_for_an_array(nbytes: int = 4 * 2**20) -> int:
    """Bytes glibc mmaps to hold one new ``nbytes`` array (0 when it comes from the heap)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    before = libc.mallinfo2().hblkhd
    array = np.ones(nbytes, np.uint8)
    grown = libc.mallinfo2().hblkhd - before
    del array
    return int(grown)


def test_workers_of_a_kdeconv_cluster_take_chunk_sized_arrays_from_the_heap():
    pytest.importorskip("distributed")
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc without mallinfo2")
    from kdeconv.cluster import ClusterConfig, open_client

    with open_client(ClusterConfig(workers=1)) as client:
        mapped = client.run(mapped_bytes_for_an_array)
    assert list(mapped.values()) == [0]


def test_a_worker_with_dask_settings_alone_maps_every_such_array():
    # the known answer the fix changes: the same worker settings, no kdeconv setup
    pytest.importorskip("distributed")
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc without mallinfo2")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            mapped = client.run(mapped_bytes_for_an_array)
    assert list(mapped.values())[0] >= 4 * 2**20


def _environment_of_worker() -> dict:
    import os

    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


def test_a_kdeconv_cluster_leaves_this_process_environment_as_it_was(monkeypatch):
    # Dask's nannies run in this process and set their workers' environment here; a process
    # spawned from here later must not inherit it (one thread, half-speed torch)
    pytest.importorskip("distributed")
    import os

    from kdeconv.cluster import ClusterConfig, open_client

    for key in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    before = dict(os.environ)
    with open_client(ClusterConfig(workers=1)) as client:
        inside = dict(os.environ)
        worker = list(client.run(_environment_of_worker).values())[0]
    assert inside == before
    assert dict(os.environ) == before
    assert worker == {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}  # the workers keep theirs
