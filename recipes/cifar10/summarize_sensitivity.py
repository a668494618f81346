"""Collect the AdvBN sensitivity runs (sensitivity.sh) and the main table's seed-0 standard/advbn runs into
results/sensitivity/README.md and results/sensitivity/sensitivity.png.

Each AdvBN row is compared with the standard run trained with the same lr and steps (its "control"): the main
table's standard seed 0 for the variants that only change AdvBN, the lr0.001 / steps300 standard runs otherwise.
Run from the repository root: python recipes/cifar10/summarize_sensitivity.py"""

import json
from pathlib import Path

R = Path("recipes/cifar10")
MAIN_STD = R / "runs/standard/seed0/result.json"
# (row name, result file, what changed, control result file)
ROWS = [
    ("standard (main table)", MAIN_STD, "-", None),
    ("advbn, paper defaults (main table)", R / "runs/advbn/seed0/result.json", "eps 1.1, 6 steps, layer1, lr 0.01",
     MAIN_STD),
    ("advbn eps0.5", R / "runs/sensitivity/eps0.5/advbn/seed0/result.json", "eps 0.5", MAIN_STD),
    ("advbn steps3", R / "runs/sensitivity/steps3/advbn/seed0/result.json", "3 PGD steps", MAIN_STD),
    ("standard layer2", R / "runs/sensitivity/layer2/standard/seed0/result.json", "prefix up to layer2 frozen", None),
    ("advbn layer2", R / "runs/sensitivity/layer2/advbn/seed0/result.json", "after layer2 (prefix up to layer2 frozen)",
     R / "runs/sensitivity/layer2/standard/seed0/result.json"),
    ("standard lr0.001", R / "runs/sensitivity/lr0.001/standard/seed0/result.json", "lr 0.001", None),
    ("advbn lr0.001", R / "runs/sensitivity/lr0.001/advbn/seed0/result.json", "lr 0.001",
     R / "runs/sensitivity/lr0.001/standard/seed0/result.json"),
    ("standard steps300", R / "runs/sensitivity/steps300/standard/seed0/result.json", "300 steps (3x budget)", None),
    ("advbn steps300", R / "runs/sensitivity/steps300/advbn/seed0/result.json", "300 steps (3x budget)",
     R / "runs/sensitivity/steps300/standard/seed0/result.json"),
]


def _load(path: Path | None) -> dict | None:
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def main() -> None:
    lines = ["# AdvBN sensitivity (ResNet-20, seed 0 only, the full recipe's evaluation)", "",
             "One seed each: read small differences against the main table's std over seeds (about 0.2-0.5 mCA).",
             "Δ columns compare each AdvBN run with the standard fine-tune trained with the same lr and steps.", "",
             "| run | change | clean JPEG test | lossless-1k | mCA (19x5) | control | Δ mCA vs control | "
             "Δ clean vs control |",
             "|---|---|---|---|---|---|---|---|"]
    points = []
    for name, path, what, ctrl_path in ROWS:
        r, c = _load(path), _load(ctrl_path)
        if r is None:
            lines.append(f"| {name} | {what} | (not finished) | | | | | |")
            continue
        ctrl = "-" if ctrl_path is None else ctrl_path.parent.parent.parent.name.replace("runs", "main")
        if c is not None:
            dm, dc = 100 * (r["mca"] - c["mca"]), 100 * (r["clean_acc_jpeg"] - c["clean_acc_jpeg"])
            d = f"{dm:+.2f} | {dc:+.2f}"
        else:
            d = "- | -" if ctrl_path is None else "(control not finished) | "
        lines.append(f"| {name} | {what} | {100 * r['clean_acc_jpeg']:.2f} | {100 * r['clean_acc_lossless']:.2f} | "
                     f"{100 * r['mca']:.2f} | {ctrl} standard | {d} |" if ctrl_path is not None else
                     f"| {name} | {what} | {100 * r['clean_acc_jpeg']:.2f} | {100 * r['clean_acc_lossless']:.2f} | "
                     f"{100 * r['mca']:.2f} | - | {d} |")
        points.append((name, 100 * r["clean_acc_jpeg"], 100 * r["mca"]))
    out = R / "results/sensitivity/README.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())
    _plot(points, out.with_name("sensitivity.png"))


def _plot(points: list[tuple[str, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, clean, mca in points:
        marker = "o" if name.startswith("standard") else "^"
        ax.scatter(clean, mca, marker=marker)
        ax.annotate(name, (clean, mca), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("clean accuracy, JPEG test set (%)")
    ax.set_ylabel("mean corruption accuracy, 19x5 (%)")
    ax.set_title("AdvBN sensitivity, ResNet-20, seed 0 (o standard, ^ AdvBN)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
