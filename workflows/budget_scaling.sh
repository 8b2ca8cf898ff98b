#!/usr/bin/env bash
# How the shipped recipe's quality grows with training time: the same data and config as
# workflows/train_default.sh, trained for shorter budgets, then the check set's pixel metrics.
#
#   WORK=runs/v4 bash workflows/budget_scaling.sh          # budgets 17.5 and 35 min (~60 min)
#   BUDGETS="17.5 35 70" WORK=runs/v4 bash workflows/budget_scaling.sh
#
# Needs the three pairs stores of train_default.sh in $WORK (its generate stage). Each budget is a
# fresh run (the cosine schedule follows the budget), in $WORK/budget_<minutes>; a finished one is kept.
# Prints NCC A / B per budget and two extrapolations to the target (workflows/budget_scaling.py).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/default}
BUDGETS=${BUDGETS:-"17.5 35"}
TRAIN_CONFIG=${TRAIN_CONFIG:-configs/train_default.yaml}
DATA=(--data "$WORK/pairs120.zarr" --data "$WORK/pairs60.zarr" --data "$WORK/pairs96x128.zarr")

for m in $BUDGETS; do
  run="$WORK/budget_$m"
  if [ ! -f "$run/check.json" ]; then
    kdeconv train --config "$TRAIN_CONFIG" "${DATA[@]}" --out "$run" --max-minutes "$m" --overwrite
    python workflows/check_default_model.py --checkpoint "$run/best.pt" --no-index \
      --no-other-shapes --no-demo-map --out "$run/check.json" > /dev/null
  fi
done
python workflows/budget_scaling.py "$WORK"/budget_*/check.json "$@"
