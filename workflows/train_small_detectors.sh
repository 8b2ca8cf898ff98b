#!/usr/bin/env bash
# lib-v3: lib-v2 fine-tuned so that small detectors (60x60, run at the model's 120 px), weak,
# blurred, 8-bit patterns and bands unlike the dynamical simulation's (kinematic looks) read as
# one crystal when they are one (docs/model_card.md, "lib-v3").
#
#   bash workflows/train_small_detectors.sh          # generate, train, check
#   STAGES="check" bash workflows/train_small_detectors.sh
#
# Budget: generation ~6 min + MAX_MINUTES (default 55) of training + checks on 2 cores.
# Install (only if the gate passes):
#   python workflows/check_default_model.py --checkpoint runs/lib_v3/run/best.pt --install \
#     --check-json runs/lib_v3/check.json --run runs/lib_v3/run --working-range 120 160 120
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/lib_v3}
MAX_MINUTES=${MAX_MINUTES:-75}
STAGES=${STAGES:-"generate train check"}
LIB_V2_COMMIT=791ad83
mkdir -p "$WORK"
source workflows/train_stages.sh

DATA=("$WORK/pairs60to120.zarr" "$WORK/pairs120.zarr" "$WORK/kinematic60to120.zarr" "$WORK/kinematic120.zarr")
if has generate; then
  generate configs/generate_library_60to120.yaml "${DATA[0]}"
  generate configs/generate_library_120_v3.yaml "${DATA[1]}"
  generate configs/generate_kinematic_60to120.yaml "${DATA[2]}"
  generate configs/generate_kinematic_120.yaml "${DATA[3]}"
fi

INIT=$(init_checkpoint configs/train_small_detectors.yaml "$LIB_V2_COMMIT" "$WORK/lib_v2.pt")

if has train; then
  train_or_resume "$WORK/run" configs/train_small_detectors.yaml "$INIT" "$MAX_MINUTES" "${DATA[@]}"
fi

if has check; then
  python workflows/check_default_model.py --checkpoint "$WORK/run/best.pt" --out "$WORK/check.json" \
    --working-range 120 160 120
fi
