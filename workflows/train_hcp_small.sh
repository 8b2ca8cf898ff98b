#!/usr/bin/env bash
# Recipe of the lib-v2.3 candidate (not shipped; docs/model_card.md): lib-v2.2 fine-tuned on its
# hcp-weighted 120x120 pairs plus hcp-weighted pairs made at 60x60 and resampled to 120x120 as
# separate runs them (configs/generate_library_hcp.yaml, configs/generate_library_hcp_60to120.yaml,
# configs/train_hcp_small.yaml), then its weight head refitted, its claim weight chosen on maps
# and the gate (workflows/refit_weight_head.sh). It stops before install: the candidate lost Si.
#
#   bash workflows/train_hcp_small.sh                # generate, train, refit (+ choose, check)
#   STAGES="refit" REFIT_STAGES="check install" bash workflows/train_hcp_small.sh
#
# Budget on 2 cores: generation ~3 min (96,000 + 24,000 pairs, 10.5 GB), training MAX_MINUTES
# (default 60; an interrupted run continues from its last.pt), refit, choose and gate ~30 min.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/hcp_small}
MAX_MINUTES=${MAX_MINUTES:-60}
TRAIN_CONFIG=configs/train_hcp_small.yaml
STAGES=${STAGES:-"generate train refit"}
LIB_V22_COMMIT=f95019c
mkdir -p "$WORK"

source workflows/train_stages.sh

DATA=("$WORK/pairs.zarr" "$WORK/pairs60to120.zarr")
if has generate; then
  generate configs/generate_library_hcp.yaml "${DATA[0]}"
  generate configs/generate_library_hcp_60to120.yaml "${DATA[1]}"
fi

INIT=$(init_checkpoint "$TRAIN_CONFIG" "$LIB_V22_COMMIT" "$WORK/lib_v22.pt")

if has train; then
  train_or_resume "$WORK/run" "$TRAIN_CONFIG" "$INIT" "$MAX_MINUTES" "${DATA[@]}"
fi

if has refit; then
  REFIT_STAGES=${REFIT_STAGES:-"features fit choose check"} refit_run "$WORK/run" "$WORK/weight_head" lib-v2.3 \
    "bash workflows/train_hcp_small.sh  (kdeconv generate --config configs/generate_library_hcp.yaml; kdeconv generate --config configs/generate_library_hcp_60to120.yaml; kdeconv train --config configs/train_hcp_small.yaml --init-checkpoint lib-v2.2 --max-minutes $MAX_MINUTES; bash workflows/refit_weight_head.sh)"
fi
