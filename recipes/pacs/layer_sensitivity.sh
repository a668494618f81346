#!/usr/bin/env bash
# AdvBN layer sensitivity on PACS (issue 13): standard vs AdvBN, seed 0, single-source photo -> art_painting,
# cartoon, sketch, with the AdvBN layer (and so the frozen prefix of both arms) at each of three candidates of
# `advbn-aug layers tf_efficientnet_lite0`. blocks.1 (the default) reuses the full table's runs. Resumable like
# every recipe command; about 1.2 CPU-hours beyond the full table's runs (1.8 without them). From the repository root:
#   OMP_NUM_THREADS=1 nohup nice -n 19 bash recipes/pacs/layer_sensitivity.sh > runs/pacs-layers.out 2>&1 &
set -euo pipefail
layers=${LAYERS:-"blocks.0 blocks.1 blocks.2"}
seeds=${SEEDS:-0}
for layer in $layers; do
    runs="recipes/pacs/runs/layers/$layer"
    [ "$layer" = blocks.1 ] && runs="recipes/pacs/runs/single_source_photo"  # the same runs as the full table's
    # shellcheck disable=SC2086
    advbn-aug recipe pacs --arms standard advbn --seeds $seeds --advbn-layer "$layer" --threads 1 --no-progress \
        --output "recipes/pacs/results/layers/$layer" --runs-dir "$runs"
done
python - "$layers" <<'PY'
import json, sys
from pathlib import Path

print("| AdvBN layer | standard mean | AdvBN mean (clean BN) | AdvBN mean (adv BN) | Δ clean BN | Δ adv BN |")
print("|---|---|---|---|---|---|")
for layer in sys.argv[1].split():
    path = Path("recipes/pacs/results/layers") / layer / "results.json"
    if not path.is_file():
        continue
    arms, ev = json.loads(path.read_text())["arms"], json.loads(path.read_text())["evidence"]
    if not {"standard", "advbn"} <= set(arms):
        continue
    d = ev.get("advbn_vs_standard", {})
    pct = lambda s: f"{100 * s['mean']:.2f}" if s else "-"
    print(f"| {layer} | {pct(arms['standard'].get('mean'))} | {pct(arms['advbn'].get('mean'))} | "
          f"{pct(arms['advbn'].get('mean_adv'))} | {100 * d['mean']['mean']:+.2f} | {100 * d['mean_adv']['mean']:+.2f} |")
PY
