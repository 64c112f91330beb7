#!/bin/bash
# The third registration's predictions, written once (before any run of these settings) from the repository root,
# with the calibration and form of the second (docs/predictions/2026-12-07-gauged), unchanged.
# `bash register.sh g14` was run for the first commit; `bash register.sh g13` once the noto-lora64 probe was in
# docs/data/learnability/probes (before any g13 run).
set -euo pipefail
P="python -m simulate.predict --calibration docs/data/learnability-gauged --form gauged --n-concepts 150"
D=docs/predictions/2026-12-07-gauged-rank64-scratch
NOTO=emoji-noto-150; TWO=emoji-openmoji+noto-150
case "${1:-}" in
  g13) $P --scenario lora --lora-rank 64 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100 --out $D/g13-noto-lora64-v4 ;;
  g14) $P --scenario scratch --unet-channels 64,128 --data-set $TWO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 50 --out $D/g14-scratch-cp50-p240 ;;
  *) echo "usage: register.sh g13|g14" >&2; exit 2 ;;
esac
