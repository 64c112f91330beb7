#!/bin/bash
# The gauged registration's predictions, written once (before any run of these settings) from the repository root.
set -euo pipefail
P="python -m simulate.predict --calibration docs/data/learnability-gauged --form gauged --n-concepts 150"
D=docs/predictions/2026-12-07-gauged
NOTO=emoji-noto-150; OM=emoji-openmoji-150; TWO=emoji-openmoji+noto-150
$P --scenario continuous --unet-channels 64,128 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100 --out $D/g01-noto-full-v4
$P --scenario lora --lora-rank 8 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100 --out $D/g02-noto-lora8-v4
$P --scenario lora --lora-rank 32 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100 --out $D/g03-noto-lora32-v4
$P --scenario lora --lora-rank 8 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 80 --poisoned-concepts 100 --out $D/g04-noto-lora8-v1.33
$P --scenario continuous --unet-channels 64,128 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 50 --out $D/g05-noto-full-cp50-p240
$P --scenario lora --lora-rank 32 --data-set $OM --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 100 --out $D/g06-openmoji-lora32-v4
$P --scenario continuous --unet-channels 64,128 --data-set $OM --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 50 --out $D/g07-openmoji-full-cp50-p240
$P --scenario lora --lora-rank 16 --data-set $TWO --benign-per-concept 40 --poison-per-concept 160 --poisoned-concepts 100 --out $D/g08-lora16-v2.67
$P --scenario lora --lora-rank 4 --data-set $TWO --benign-per-concept 40 --poison-per-concept 400 --poisoned-concepts 100 --out $D/g09-lora4-v6.67
$P --scenario continuous --unet-channels 32,64 --data-set $TWO --benign-per-concept 20 --poison-per-concept 120 --poisoned-concepts 100 --out $D/g10-small-m20-v4
$P --scenario lora --lora-rank 8 --data-set $TWO --benign-per-concept 40 --poison-per-concept 480 --poisoned-concepts 25 --out $D/g11-lora8-cp25-p480
$P --scenario continuous --unet-channels 64,128 --data-set $TWO --benign-per-concept 20 --poison-per-concept 200 --poisoned-concepts 100 --out $D/g12-full-m20-v6.67
