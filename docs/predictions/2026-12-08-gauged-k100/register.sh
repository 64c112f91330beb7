#!/bin/bash
# The fourth registration's predictions, written once (before any run of these settings) from the repository root,
# with the calibration and form of the second (docs/predictions/2026-12-07-gauged), unchanged; the six probes of
# the two new data sets (docs/data/learnability/probes/noto100-*, openmoji100-*) were measured first.
set -euo pipefail
P="python -m simulate.predict --calibration docs/data/learnability-gauged --form gauged --n-concepts 100"
D=docs/predictions/2026-12-08-gauged-k100
NOTO=emoji-noto-100; OM=emoji-openmoji-100
FULL="--scenario continuous --unet-channels 64,128"
$P $FULL --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 67 --out $D/k01-noto100-full-v4
$P --scenario lora --lora-rank 8 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 67 --out $D/k02-noto100-lora8-v4
$P --scenario lora --lora-rank 64 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 360 --poisoned-concepts 67 --out $D/k03-noto100-lora64-v6
$P --scenario lora --lora-rank 8 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 33 --out $D/k04-noto100-lora8-cp33-p240
$P --scenario lora --lora-rank 8 --data-set $NOTO --benign-per-concept 40 --poison-per-concept 120 --poisoned-concepts 67 --out $D/k05-noto100-lora8-cp67-p120
$P $FULL --data-set $NOTO --benign-per-concept 20 --poison-per-concept 180 --poisoned-concepts 67 --out $D/k06-noto100-full-m20-v6
$P $FULL --data-set $OM --benign-per-concept 40 --poison-per-concept 240 --poisoned-concepts 33 --out $D/k07-openmoji100-full-cp33-p240
$P --scenario lora --lora-rank 8 --data-set $OM --benign-per-concept 40 --poison-per-concept 60 --poisoned-concepts 67 --out $D/k08-openmoji100-lora8-v1
$P --scenario lora --lora-rank 32 --data-set $OM --benign-per-concept 40 --poison-per-concept 160 --poisoned-concepts 67 --out $D/k09-openmoji100-lora32-v2.67
$P --scenario lora --lora-rank 32 --data-set $OM --benign-per-concept 40 --poison-per-concept 320 --poisoned-concepts 33 --out $D/k10-openmoji100-lora32-cp33-p320
$P --scenario lora --lora-rank 8 --data-set $OM --benign-per-concept 20 --poison-per-concept 60 --poisoned-concepts 67 --out $D/k11-openmoji100-lora8-m20-v2
$P $FULL --data-set $OM --benign-per-concept 40 --poison-per-concept 360 --poisoned-concepts 67 --out $D/k12-openmoji100-full-v6
