#!/usr/bin/env bash
# The device check of separate and train, in one command (<= 8 minutes on one H100/H200):
#
#   bash benchmarks/gpu_check.sh                      # on the CUDA machine, results in $OUT
#   GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh # the dry run on any CPU (tiny sizes)
#
# On a bare CUDA machine (Python 3.12 with torch, numpy, scipy, h5py, tifffile, numba; no dask,
# zarr or pydantic; no network) it first installs the wheels that benchmarks/fetch_gpu_wheels.sh
# put in .whl/ (pip --no-index, into a private folder). Then benchmarks/gpu_check.py writes
# $OUT/gpu_check.json (see that file for the steps) and the log $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
export OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/kdeconv-site}
if [ "${GPU_CHECK_DEVICE:-cuda}" != cpu ] && compgen -G ".whl/*.whl" > /dev/null; then
  t0=$(date +%s)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || { echo "gpu_check: installing .whl/ failed" >&2; exit 3; }
  export PYTHONPATH="$SITE"
  echo "installed $(ls .whl/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - t0 )) s"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 KDECONV_PROGRESS=0
timeout "${GPU_CHECK_TIMEOUT:-450}" "$PY" -m benchmarks.gpu_check 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
