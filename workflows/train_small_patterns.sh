#!/usr/bin/env bash
# The small-detector model lib-v2.5: lib-v2.2 fine-tuned on library pairs made at 60x60 and 80x80
# and resampled to 120x120 after mixing, as separate runs small patterns (docs/model_card.md,
# "lib-v2.5, the small-detector model"). separate picks it for patterns whose shorter side is
# below 96 px.
#
#   bash workflows/train_small_patterns.sh               # generate, train
#   STAGES="train" MAX_MINUTES=60 bash workflows/train_small_patterns.sh   # continue from last.pt
#
# Budget on 2 cores: generation ~6 min (48,000 + 16,000 pairs), training MAX_MINUTES (default 40;
# an interrupted run continues from its last.pt). Install: check_default_model.py --install
# --small-patterns (gate bars on 60x60 maps).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/small_patterns}
MAX_MINUTES=${MAX_MINUTES:-40}
TRAIN_CONFIG=configs/train_small_patterns.yaml
STAGES=${STAGES:-"generate train"}
LIB_V22_COMMIT=f95019c
mkdir -p "$WORK"

source workflows/train_stages.sh

DATA=("$WORK/pairs60.zarr" "$WORK/pairs80.zarr")
if has generate; then
  generate configs/generate_library_small60.yaml "${DATA[0]}"
  generate configs/generate_library_small80.yaml "${DATA[1]}"
fi

INIT=$(init_checkpoint "$TRAIN_CONFIG" "$LIB_V22_COMMIT" "$WORK/lib_v22.pt")

if has train; then
  train_or_resume "$WORK/run" "$TRAIN_CONFIG" "$INIT" "$MAX_MINUTES" "${DATA[@]}"
fi
