#!/usr/bin/env bash
# Recipe of the shipped model lib-v2.1: lib-v2 (the trunk and both decoders unchanged) with its
# weight head refitted on simulated calibration maps read through separate's own input path (80
# seeds, the 53 maps at 120 px and up; workflows/refit_weight_head.py), a boundary claim weight
# chosen for that head on validation maps (workflows/choose_claim_weight.py), then the install
# gate (docs/model_card.md): install runs only when it passes.
#
#   bash workflows/refit_weight_head.sh                  # features, fit, choose, check, install
#   STAGES="check install" bash workflows/refit_weight_head.sh
#
# Budget on 2 cores: features ~6-17 min (two processes, 40 seeds each; a rerun skips maps done),
# fit ~1 min, choose ~10 min, check ~9 min. SOURCE is the model refitted (default: lib-v2 from the
# commit that shipped it, or the installed default when that is lib-v2 still); NAME the installed
# model's name; RUN and COMMAND the training run behind SOURCE and its recipe, when not lib-v2;
# MAPS the calibration maps per features process (default 40).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-runs/weight_head}
STAGES=${STAGES:-"features fit choose check install"}
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
  python workflows/refit_weight_head.py features --checkpoint "$SOURCE" --work "$WORK" --first-seed 2000 --maps "${MAPS:-40}" &
  first=$!
  python workflows/refit_weight_head.py features --checkpoint "$SOURCE" --work "$WORK" --first-seed 2100 --maps "${MAPS:-40}"
  wait "$first"
fi

if has fit; then
  python workflows/refit_weight_head.py fit --checkpoint "$SOURCE" --work "$WORK" --out "$WORK/candidate.pt"
fi

if has choose; then
  python workflows/choose_claim_weight.py --checkpoint "$WORK/candidate.pt" --work "$WORK/claim_weight" \
    --out "$WORK/claim_choice.json"
fi

# The same gate as every default model (demo and duplex maps must not regress), at the chosen bar.
if has check; then
  CLAIM=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['chosen'])" "$WORK/claim_choice.json")
  python workflows/check_default_model.py --checkpoint "$WORK/candidate.pt" --claim-weight "$CLAIM" \
    --work "$WORK/check" --out "$WORK/check.json"
fi

# The installed model keeps its trunk's training record: RUN's (with COMMAND, the recipe that
# trained it) when SOURCE came from a run, else lib-v2's.
if has install; then
  if [ -n "${RUN:-}" ]; then
    record=(--run "$RUN" --command "${COMMAND:?COMMAND: the recipe that trained RUN}")
  else
    [ -f "$WORK/lib_v2.json" ] || git show "$LIB_V2_COMMIT:kdeconv/model/weights/default.json" > "$WORK/lib_v2.json"
    record=(--training-record "$WORK/lib_v2.json")
  fi
  python workflows/check_default_model.py --checkpoint "$WORK/check/candidate.pt" --install \
    --check-json "$WORK/check.json" --name "${NAME:-lib-v2.1}" "${record[@]}" \
    --claim-choice "$WORK/claim_choice.json"
fi
