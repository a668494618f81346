"""Collect the AdvBN sensitivity runs (sensitivity.sh) and the main table's seed-0 standard/advbn runs into
results/sensitivity/README.md. Run from the repository root: python recipes/cifar10/summarize_sensitivity.py"""

import json
from pathlib import Path

R = Path("recipes/cifar10")
rows = [("standard (main table)", R / "runs/standard/seed0/result.json", "-"),
        ("advbn, paper defaults (main table)", R / "runs/advbn/seed0/result.json", "eps 1.1, 6 steps, layer1, lr 0.01")]
VARIANTS = (("eps0.5", "eps 0.5"), ("steps3", "3 PGD steps"), ("layer2", "after layer2 (prefix to layer2 frozen)"),
            ("lr0.001", "lr 0.001"))
for name, what in VARIANTS:
    rows.append((f"advbn {name}", R / f"runs/sensitivity/{name}/advbn/seed0/result.json", what))
ref = json.loads(rows[0][1].read_text()) if rows[0][1].is_file() else None
lines = ["# AdvBN sensitivity (ResNet-20, seed 0 only, the full recipe's budget and evaluation)", "",
         "One seed each: read small differences against the main table's std over seeds.", "",
         "| run | change | clean JPEG test | lossless-1k | mCA (19x5) | Δ mCA vs standard | Δ clean vs standard |",
         "|---|---|---|---|---|---|---|"]
for name, path, what in rows:
    if not path.is_file():
        lines.append(f"| {name} | {what} | (not finished) | | | | |")
        continue
    r = json.loads(path.read_text())
    d = (f"{100 * (r['mca'] - ref['mca']):+.2f} | {100 * (r['clean_acc_jpeg'] - ref['clean_acc_jpeg']):+.2f}"
         if ref else "- | -")
    lines.append(f"| {name} | {what} | {100 * r['clean_acc_jpeg']:.2f} | {100 * r['clean_acc_lossless']:.2f} | "
                 f"{100 * r['mca']:.2f} | {d} |")
out = R / "results/sensitivity/README.md"
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
