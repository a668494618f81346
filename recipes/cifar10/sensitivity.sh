#!/usr/bin/env bash
# The AdvBN sensitivity runs (ResNet-20, the full recipe's budget and evaluation). Each variant writes its own
# results and runs folders and, where it changes more than AdvBN, trains its own control (the same arm without
# AdvBN). Finished runs are skipped, so rerunning collects what is missing.
#   bash recipes/cifar10/sensitivity.sh && python recipes/cifar10/summarize_sensitivity.py   (from the repo root)
set -euo pipefail
R=recipes/cifar10
variant() {  # name, extra flags...
  local name=$1; shift
  advbn-aug recipe cifar10 --arms advbn --seeds 0 --threads 1 --no-progress \
      --output $R/results/sensitivity/$name --runs-dir $R/runs/sensitivity/$name "$@"
}
variant eps0.5    --advbn-eps 0.5
variant steps3    --advbn-steps 3
variant layer2    --arms standard advbn --advbn-layer layer2
variant lr0.001   --arms standard advbn augmix augmix_advbn --lr 0.001 --seeds 0 1 2
variant steps300  --arms standard advbn --steps 300 --seeds 0 1 2
# cheaper attack schedules (issue 12), at lr 0.001 where the paper-default AdvBN arm gained over its control;
# arms from configs/schedules/ (each sets advbn_options over the shared AdvBN settings)
variant schedules --arms standard advbn advbn_rs2 advbn_fgsm_rs advbn_warm1 advbn_every4 advbn_quarter \
    advbn_warm1_quarter advbn_fgsm_rs_quarter --lr 0.001 \
    --seeds 0 1 2 --arms-dir $R/configs/schedules
