#!/usr/bin/env bash
# Small AdvBN sensitivity table (one seed, the full recipe's budget and evaluation; compare with the main table's
# advbn/standard seed 0). Each variant writes its own results folder and runs folder.
#   bash recipes/cifar10/sensitivity.sh            (run from the repository root)
set -euo pipefail
R=recipes/cifar10
variant() {  # name, extra flags...
  local name=$1; shift
  advbn-aug recipe cifar10 --arms advbn --seeds 0 --threads 1 --no-progress \
      --output $R/results/sensitivity/$name --runs-dir $R/runs/sensitivity/$name "$@"
}
variant eps0.5    --advbn-eps 0.5
variant steps3    --advbn-steps 3
variant layer2    --advbn-layer layer2
variant lr0.001   --lr 0.001
# like-for-like controls and a longer budget (added in the second session)
variant lr0.001   --arms standard advbn --lr 0.001
variant steps300  --arms standard advbn --steps 300
variant layer2    --arms standard advbn --advbn-layer layer2
# more seeds for the variants with a matched control (run with SEEDS="0 1 2"; finished seeds are skipped)
if [[ -n "${SEEDS:-}" ]]; then
  variant steps300  --arms standard advbn --steps 300 --seeds $SEEDS
  variant lr0.001   --arms standard advbn --lr 0.001 --seeds $SEEDS
  # is AdvBN complementary to AugMix at the paper's lr too?
  variant lr0.001   --arms standard advbn augmix augmix_advbn --lr 0.001 --seeds $SEEDS
fi
