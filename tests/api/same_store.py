"""Byte-for-byte comparison of two stores, for the CLI-against-Python tests."""

from __future__ import annotations

import json


def assert_same_store(first, second):
    """Byte-identical stores, but for the root attrs that say when and how each was made."""
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        if str(name) == "zarr.json":
            attrs = [json.loads((root / name).read_text())["attributes"] for root in (first, second)]
            for made in attrs:
                del made["created"], made["command"]
            assert attrs[0] == attrs[1]
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
