#!/usr/bin/env bash
# Recipe of a refitted weight head: lib-v2 (the trunk and both decoders unchanged) with its weight
# head refitted on simulated calibration maps read through separate's own input path (80 made, the
# 53 at 120 px and up fitted; workflows/refit_weight_head.py), then the install gate, which refused
# the candidate this recipe made (lib-v2.1; docs/model_card.md): install runs only when it passes.
#
#   bash workflows/refit_weight_head.sh                  # features, fit, check, install
#   STAGES="fit check" bash workflows/refit_weight_head.sh
#
# Budget on 2 cores: features ~17 min (two processes, 40 seeds each, the 53 maps at 120 px and up;
# a rerun skips maps done),
# fit ~1 min, check ~10 min. SOURCE is the model refitted (default: lib-v2 from the commit that
# shipped it, or the installed default when that is lib-v2 still).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/weight_head}
STAGES=${STAGES:-"features fit check install"}
LIB_V2_SHA=6bca9f6e3b10ef7b9f282b965b8fafa464609a90b86b76017152c5e4a81c59a2
LIB_V2_COMMIT=ed8a327
mkdir -p "$WORK"

source workflows/train_stages.sh

SOURCE=${SOURCE:-}
if [ -z "$SOURCE" ]; then
  if [ "$(sha256sum kdeconv/model/weights/default.pt | cut -c1-64)" = "$LIB_V2_SHA" ]; then
    SOURCE=kdeconv/model/weights/default.pt
  else
    SOURCE=$WORK/lib_v2.pt
    [ -f "$SOURCE" ] || git show "$LIB_V2_COMMIT:kdeconv/model/weights/default.pt" > "$SOURCE"
  fi
fi

if has features; then
  python workflows/refit_weight_head.py features --checkpoint "$SOURCE" --work "$WORK" --first-seed 2000 --maps 40 &
  first=$!
  python workflows/refit_weight_head.py features --checkpoint "$SOURCE" --work "$WORK" --first-seed 2100 --maps 40
  wait "$first"
fi

if has fit; then
  python workflows/refit_weight_head.py fit --checkpoint "$SOURCE" --work "$WORK" --out "$WORK/candidate.pt"
fi

# The same gate as every default model (demo and duplex maps must not regress).
if has check; then
  python workflows/check_default_model.py --checkpoint "$WORK/candidate.pt" --out "$WORK/check.json"
fi

if has install; then
  python workflows/check_default_model.py --checkpoint "$WORK/candidate.pt" --install \
    --check-json "$WORK/check.json" --name "${NAME:-lib-v2.1}" \
    --training-record kdeconv/model/weights/default.json
fi
