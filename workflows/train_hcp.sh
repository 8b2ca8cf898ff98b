#!/usr/bin/env bash
# Recipe of lib-v2.2: lib-v2 fine-tuned on hcp-weighted library pairs (alpha-Ti, Mg and Si drawn
# 3-4x as often, every other phase kept; configs/generate_library_hcp.yaml, configs/train_hcp.yaml),
# then its weight head refitted and its claim weight chosen on maps, then the install gate
# (workflows/refit_weight_head.sh): install runs only when it passes.
#
#   bash workflows/train_hcp.sh                      # generate, train, refit (+ choose, check, install)
#   STAGES="refit" REFIT_STAGES="check install" bash workflows/train_hcp.sh
#
# Budget on 2 cores: generation ~2 min (96,000 pairs, 8.4 GB), training MAX_MINUTES (default 65;
# an interrupted run continues from its last.pt), refit, choose and gate ~30 min.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/hcp}
MAX_MINUTES=${MAX_MINUTES:-65}
TRAIN_CONFIG=configs/train_hcp.yaml
STAGES=${STAGES:-"generate train refit"}
LIB_V2_COMMIT=ed8a327
mkdir -p "$WORK"

source workflows/train_stages.sh

if has generate; then
  generate configs/generate_library_hcp.yaml "$WORK/pairs.zarr"
fi

INIT=$(init_checkpoint "$TRAIN_CONFIG" "$LIB_V2_COMMIT" "$WORK/lib_v2.pt")

if has train; then
  train_or_resume "$WORK/run" "$TRAIN_CONFIG" "$INIT" "$MAX_MINUTES" "$WORK/pairs.zarr"
fi

if has refit; then
  refit_run "$WORK/run" "$WORK/weight_head" lib-v2.2 \
    "bash workflows/train_hcp.sh  (kdeconv generate --config configs/generate_library_hcp.yaml; kdeconv train --config configs/train_hcp.yaml --init-checkpoint lib-v2 --max-minutes $MAX_MINUTES; bash workflows/refit_weight_head.sh)"
fi
