#!/usr/bin/env bash
# Download, into .whl/ at the repository root, the Python 3.12 wheels that kdeconv's separate and
# train need on a CUDA machine whose image already has torch, numpy, scipy, h5py, tifffile, numba,
# click, cloudpickle, fsspec, jinja2, msgpack, packaging, psutil, pyyaml, sortedcontainers and
# toolz, but not dask, distributed, zarr or pydantic (benchmarks/gpu_check.sh installs them with
# --no-index). Versions are those the tests run with. kikuchipy and the indexing stack are not
# needed: separate, train and the check import neither.
#
#   bash benchmarks/fetch_gpu_wheels.sh [PYTHON]     # PYTHON: a python with pip (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
WHEELS=(
  dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 zict==3.0.0 tblib==3.2.2
  tornado==6.6.1
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  typing-extensions==4.16.0
)
mkdir -p .whl
rm -f .whl/*.whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 \
  -d .whl "${WHEELS[@]}"
ls -1 .whl
du -ch .whl/*.whl | tail -1
