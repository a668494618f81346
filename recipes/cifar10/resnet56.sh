#!/usr/bin/env bash
# The same recipe on the pretrained ResNet-56 (about 3x the cost of ResNet-20 per run), seed 0, the four arms
# that test the hypothesis plus the pretrained row. Writes results/resnet56/ and runs/resnet56/.
#   bash recipes/cifar10/resnet56.sh            (run from the repository root; add more seeds with --seeds 0 1 2)
set -euo pipefail
R=recipes/cifar10
advbn-aug recipe cifar10 --model resnet56 --seeds 0 --arms standard advbn augmix augmix_advbn pretrained \
    --threads 1 --no-progress --output $R/results/resnet56 --runs-dir $R/runs/resnet56 "$@"
