#!/bin/bash
# Register the learnability predictor's predictions for the held-out settings (before any of their runs).
set -e
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
CAL=docs/data/learnability
OUT=docs/predictions/2026-12-07-learnability
TWO=emoji-openmoji+noto-150
ONE=emoji-openmoji-150
pred() { name=$1; shift; $PY -m simulate.predict --calibration $CAL --n-concepts 150 --out $OUT/$name "$@" --json > /tmp/pred-$name.json; }
pred h01-lora2-v4 --scenario lora --lora-rank 2 --data-set $TWO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100
pred h02-lora32-v4 --scenario lora --lora-rank 32 --data-set $TWO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100
pred h03-openmoji-full-v4 --scenario continuous --unet-channels 64,128 --data-set $ONE --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100
pred h04-openmoji-lora8-v4 --scenario lora --lora-rank 8 --data-set $ONE --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100
pred h05-full-cp50-p240 --scenario continuous --unet-channels 64,128 --data-set $TWO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 50
pred h06-full-cp100-p120 --scenario continuous --unet-channels 64,128 --data-set $TWO --benign-per-concept 40 --poison-per-concept 120 --poisoned-concepts 100
pred h07-lora8-cp50-p240 --scenario lora --lora-rank 8 --data-set $TWO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 50
pred h08-lora8-cp100-p120 --scenario lora --lora-rank 8 --data-set $TWO --benign-per-concept 40 --poison-per-concept 120 --poisoned-concepts 100
pred h09-full-m20-v4 --scenario continuous --unet-channels 64,128 --data-set $TWO --benign-per-concept 20 --poison-per-concept 120 --poisoned-concepts 100
pred h10-lora8-m20-v4 --scenario lora --lora-rank 8 --data-set $TWO --benign-per-concept 20 --poison-per-concept 120 --poisoned-concepts 100
pred h11-lora64-v6.67 --scenario lora --lora-rank 64 --data-set $TWO --benign-per-concept 40 --poison-per-concept 400 --poisoned-concepts 100
pred h12-small-v2.67 --scenario continuous --unet-channels 32,64 --data-set $TWO --benign-per-concept 40 --poison-per-concept 160 --poisoned-concepts 100
pred h13-scratch-v2.67 --scenario scratch --unet-channels 64,128 --data-set $TWO --benign-per-concept 40 --poison-per-concept 160 --poisoned-concepts 100
pred h14-full-v1 --scenario continuous --unet-channels 64,128 --data-set $TWO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 25
pred h15-openmoji-lora8-v1.33 --scenario lora --lora-rank 8 --data-set $ONE --benign-per-concept 40 --poison-per-concept 80 --poisoned-concepts 100
echo registered
