"""Collect the AdvBN sensitivity runs (sensitivity.sh) and the main table's standard/advbn runs into
results/sensitivity/README.md and results/sensitivity/sensitivity.png (mean ± std over the seeds that finished).

Each AdvBN row is compared with the standard run trained with the same lr and steps (its "control"): the main
table's standard runs for the variants that only change AdvBN, the lr0.001 / steps300 standard runs otherwise.
Run from the repository root: python recipes/cifar10/summarize_sensitivity.py"""

import json
from pathlib import Path

import numpy as np

R = Path("recipes/cifar10")
MAIN_STD = R / "runs/standard"
S = R / "runs/sensitivity"


def _with_control(variant: str, arm: str, control: str, what: str, control_what: str) -> list[tuple]:
    """A variant's control row and its AdvBN row (compared with that control)."""
    return [(f"{control} {variant}", S / variant / control, control_what, None),
            (f"{arm} {variant}", S / variant / arm, what, S / variant / control)]


# (row name, runs folder of the arm, what changed, runs folder of its control)
ROWS = [
    ("standard (main table)", MAIN_STD, "-", None),
    ("advbn, paper defaults (main table)", R / "runs/advbn", "eps 1.1, 6 steps, layer1, lr 0.01", MAIN_STD),
    ("advbn eps0.5", S / "eps0.5/advbn", "eps 0.5", MAIN_STD),
    ("advbn steps3", S / "steps3/advbn", "3 PGD steps", MAIN_STD),
    *_with_control("layer2", "advbn", "standard", "after layer2 (prefix up to layer2 frozen)",
                   "prefix up to layer2 frozen"),
    *_with_control("lr0.001", "advbn", "standard", "lr 0.001", "lr 0.001"),
    *_with_control("lr0.001", "augmix_advbn", "augmix", "AugMix + JSD + AdvBN, lr 0.001", "AugMix + JSD, lr 0.001"),
    *_with_control("steps300", "advbn", "standard", "300 steps (3x budget)", "300 steps (3x budget)"),
]


def _load(arm_dir: Path | None) -> dict | None:
    """Mean, std and count over the finished seeds of one arm's runs folder."""
    if arm_dir is None:
        return None
    runs = [json.loads(p.read_text()) for p in sorted(arm_dir.glob("seed*/result.json"))]
    if not runs:
        return None
    out = {"n": len(runs), "by_seed": {r["seed"]: 100 * r["mca"] for r in runs}}
    for key in ("clean_acc_jpeg", "clean_acc_lossless", "mca"):
        v = np.array([100 * r[key] for r in runs])
        out[key], out[key + "_std"] = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


def _cell(r: dict, key: str) -> str:
    return f"{r[key]:.2f}" + (f" ± {r[key + '_std']:.2f}" if r["n"] > 1 else "")


def main() -> None:
    lines = ["# AdvBN sensitivity (ResNet-20, the full recipe's evaluation)", "",
             "Mean ± std over the seeds that finished (seeds column). With one seed, read small differences "
             "against the main table's std over seeds (0.2-0.7 mCA).",
             "Δ columns compare each AdvBN run with its control: the same arm without AdvBN, trained with the same "
             "lr, steps and frozen prefix; the "
             "paired column takes the per-seed differences (same seed = same batches and draws) where a variant has "
             "its own control with 2+ seeds.", "",
             "| run | change | seeds | clean JPEG test | lossless-1k | mCA (19x5) | control | Δ mCA vs control | "
             "Δ clean vs control | paired Δ mCA by seed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    points = []
    for name, path, what, ctrl_path in ROWS:
        r, c = _load(path), _load(ctrl_path)
        if r is None:
            lines.append(f"| {name} | {what} | 0 | (not finished) | | | | | | |")
            continue
        ctrl = "-" if ctrl_path is None else ctrl_path.parent.name.replace("runs", "main")
        if c is not None:
            dm, dc = r["mca"] - c["mca"], r["clean_acc_jpeg"] - c["clean_acc_jpeg"]
            d = f"{dm:+.2f} | {dc:+.2f}"
            seeds = sorted(set(r["by_seed"]) & set(c["by_seed"]))
            pairs = np.array([r["by_seed"][k] - c["by_seed"][k] for k in seeds])
            d += (f" | {pairs.mean():+.2f} ± {pairs.std(ddof=1):.2f} (n={len(pairs)}, up in {(pairs > 0).sum()})"
                  if len(pairs) > 1 and ctrl_path != MAIN_STD else " | -")
        else:
            d = "- | - | -" if ctrl_path is None else "(control not finished) | | "
        ctrl_cell = "-" if ctrl_path is None else f"{ctrl} {ctrl_path.name}"
        cells = " | ".join(_cell(r, k) for k in ("clean_acc_jpeg", "clean_acc_lossless", "mca"))
        lines.append(f"| {name} | {what} | {r['n']} | {cells} | {ctrl_cell} | {d} |")
        points.append((name, r["clean_acc_jpeg"], r["mca"]))
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
        marker = "^" if "advbn" in name else "o"
        ax.scatter(clean, mca, marker=marker)
        ax.annotate(name, (clean, mca), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("clean accuracy, JPEG test set (%)")
    ax.set_ylabel("mean corruption accuracy, 19x5 (%)")
    ax.set_title("AdvBN sensitivity, ResNet-20, mean over seeds (^ with AdvBN, o without)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
