#!/usr/bin/env bash
# Test-time BatchNorm adaptation vs AdvBN (issue 15, item 4): the lr 0.001 standard and AdvBN models of the schedules
# variant (recipes/cifar10/runs/sensitivity/schedules, made by sensitivity.sh), each evaluated without adaptation,
# with statistics re-estimated per corrupted set, and with online momentum updates; 1,000 lossless test images,
# all 19 corruptions x 5 severities. Then: python recipes/cifar10/summarize_tta.py
#   usage: bash recipes/cifar10/tta.sh [seed ...]   (from the repository root)
set -euo pipefail
R=recipes/cifar10
seeds=("$@")
[ ${#seeds[@]} -eq 0 ] && seeds=(0 1 2)
for seed in "${seeds[@]}"; do
  for arm in standard advbn; do
    out=$R/results/tta/${arm}_seed$seed
    [ -f "$out/tta_online/results.json" ] && continue
    advbn-aug eval --model resnet20 --checkpoint $R/runs/sensitivity/schedules/$arm/seed$seed/model.pt \
        --corruptions all --tta all --no-progress --device cpu --output "$out" --name "${arm}_seed$seed" > /dev/null
  done
done
