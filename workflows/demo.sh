#!/usr/bin/env bash
# The kdeconv demo, start to finish, as a user would run it on their own UP2 file:
#   simulate a Ni polycrystal map with boundary mixtures (a vendor UP2 + its ground truth)
#   -> kdeconv ingest -> kdeconv separate (shipped model, LocalCluster) -> kdeconv evaluate
#   (kdeconv beside two baselines) -> kdeconv export A and B to UP2.
# Rerunnable: every step overwrites its own output. Run from anywhere: `make demo` or
# `bash workflows/demo.sh`. Environment knobs (used by the test suite for a tiny run):
#   KDECONV_DEMO_OUT   output folder (default: ./demo-output in the repo)
#   KDECONV_DEMO_NAV   map size "NY NX" (default: configs/demo_simulate_map.yaml)
#   KDECONV_DEMO_WORKERS  LocalCluster workers for separate (default: one per core)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${KDECONV_DEMO_OUT:-$repo/demo-output}"
mkdir -p "$out"
nav=()
if [[ -n "${KDECONV_DEMO_NAV:-}" ]]; then nav=(--nav-shape ${KDECONV_DEMO_NAV}); fi
cluster=()
if [[ -n "${KDECONV_DEMO_WORKERS:-}" ]]; then cluster=(--workers "${KDECONV_DEMO_WORKERS}"); fi

step() { printf '\n== %s\n' "$*"; }
start=$SECONDS

step "1/5 simulate a polycrystal map (UP2 + ground truth)"
kdeconv simulate-map --config "$repo/configs/demo_simulate_map.yaml" --out "$out/sim" "${nav[@]}" --overwrite

step "2/5 ingest the UP2, exactly like a user's file"
kdeconv ingest "$out/sim/map.up2" "$out/map.zarr" --overwrite "${cluster[@]}"

step "3/5 separate every pattern with the shipped model"
kdeconv separate "$out/map.zarr" --out "$out/separated.zarr" --overwrite "${cluster[@]}"

step "4/5 evaluate against the truth, beside the baselines (first run compiles the indexer, ~1-2 min)"
kdeconv evaluate "$out/separated.zarr" --truth "$out/sim/truth.zarr" --out "$out/report" \
  --config "$repo/configs/demo_evaluate.yaml" --overwrite

step "5/5 export the separated constituents A and B to UP2"
kdeconv export "$out/separated.zarr" --array A "$out/A.up2" --overwrite "${cluster[@]}"
kdeconv export "$out/separated.zarr" --array B "$out/B.up2" --overwrite "${cluster[@]}"

printf '\nDemo finished in %d s.\n' "$((SECONDS - start))"
printf 'Report: %s (metrics: %s)\n' "$out/report/report.md" "$out/report/metrics.json"
printf 'Separated patterns: %s, %s\n' "$out/A.up2" "$out/B.up2"
