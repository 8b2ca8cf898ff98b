#!/usr/bin/env bash
# The lib-v2.4 candidate: lib-v2.2 fine-tuned so that maps simulated with kinematic master
# patterns (band profiles unlike the dynamical library's; kikuchipy simulates any phase so),
# at 120 px and at 60 px run at the model's 120 px, separate as the library's maps do
# (docs/model_card.md, "lib-v2.4 candidate").
#
#   bash workflows/train_kinematic.sh                    # generate, train, refit (+ choose, check)
#   STAGES="refit" REFIT_STAGES="check install" bash workflows/train_kinematic.sh
#
# Budget on 2 cores: generation ~8 min, training MAX_MINUTES (default 45; an interrupted run
# continues from its last.pt), refit on 2 x MAPS calibration maps (default 20 per process, half
# lib-v2.2's: a map takes ~1 min per process), choose and gate ~30 min.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/kinematic}
MAX_MINUTES=${MAX_MINUTES:-45}
TRAIN_CONFIG=configs/train_kinematic.yaml
STAGES=${STAGES:-"generate train refit"}
LIB_V22_COMMIT=f95019c
mkdir -p "$WORK"

source workflows/train_stages.sh

DATA=("$WORK/pairs.zarr" "$WORK/kinematic120.zarr" "$WORK/kinematic60to120.zarr")
if has generate; then
  # the first 48,000 of lib-v2.2's own pairs, so that the kinematic pairs are about a third
  [ -d "${DATA[0]}" ] || kdeconv generate --config configs/generate_library_hcp.yaml --n 48000 --out "${DATA[0]}"
  generate configs/generate_kinematic_120.yaml "${DATA[1]}"
  generate configs/generate_kinematic_small.yaml "${DATA[2]}"
fi

INIT=$(init_checkpoint "$TRAIN_CONFIG" "$LIB_V22_COMMIT" "$WORK/lib_v22.pt")

if has train; then
  train_or_resume "$WORK/run" "$TRAIN_CONFIG" "$INIT" "$MAX_MINUTES" "${DATA[@]}"
fi

if has refit; then
  export MAPS=${MAPS:-20}
  REFIT_STAGES=${REFIT_STAGES:-"features fit choose check"} refit_run "$WORK/run" "$WORK/weight_head" lib-v2.4 \
    "bash workflows/train_kinematic.sh  (kdeconv generate --config configs/generate_library_hcp.yaml --n 48000; kdeconv generate --config configs/generate_kinematic_120.yaml; kdeconv generate --config configs/generate_kinematic_small.yaml; kdeconv train --config configs/train_kinematic.yaml --init-checkpoint lib-v2.2 --max-minutes $MAX_MINUTES; MAPS=$MAPS bash workflows/refit_weight_head.sh)"
fi
