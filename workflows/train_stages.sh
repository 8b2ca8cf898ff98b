# Stages the model recipes share (sourced by workflows/train_*.sh and refit_weight_head.sh; run
# from the repository root).

has() { [[ " $STAGES " == *" $1 "* ]]; }

generate() {  # config, store: a store already there is kept (generate resumes a partial one)
  if [ -d "$2" ]; then echo "kept $2"; else kdeconv generate --config "$1" --out "$2"; fi
}

# The checkpoint a recipe starts from: "default" while the installed default is the one its
# train config pins (init_checkpoint_sha256), else that model restored from the commit that
# shipped it into FILE.   init_checkpoint CONFIG COMMIT FILE
init_checkpoint() {
  local pinned
  pinned=$(sed -n 's/^init_checkpoint_sha256: *//p' "$1")
  if [ -n "$pinned" ] && [ "$(sha256sum kdeconv/model/weights/default.pt | cut -c1-64)" != "$pinned" ]; then
    [ -f "$3" ] || git show "$2:kdeconv/model/weights/default.pt" > "$3"
    echo "$3"
  else
    echo default
  fi
}

# Train RUN from INIT on the pairs stores, or resume it from its last.pt.
#   train_or_resume RUN CONFIG INIT MAX_MINUTES STORE...
train_or_resume() {
  local run=$1 config=$2 init=$3 minutes=$4
  shift 4
  local args=()
  for d in "$@"; do args+=(--data "$d"); done
  if [ -f "$run/last.pt" ]; then
    kdeconv train --resume --out "$run" "${args[@]}" --max-minutes "$minutes"
  else
    kdeconv train --config "$config" "${args[@]}" --out "$run" --init-checkpoint "$init" \
      --max-minutes "$minutes" --overwrite
  fi
}

# Refit RUN's best.pt head, choose its claim weight, gate it and (with install in REFIT_STAGES)
# install it as NAME with COMMAND as its recipe (workflows/refit_weight_head.sh), under WORK.
#   refit_run RUN WORK NAME COMMAND
refit_run() {
  STAGES=${REFIT_STAGES:-"features fit choose check install"} \
    SOURCE="$1/best.pt" WORK="$2" NAME="$3" RUN="$1" COMMAND="$4" \
    bash workflows/refit_weight_head.sh
}
