"""Robustness per cost of the cheaper AdvBN attack schedules (issue 12), from the committed recipe table.

Reads ``results/sensitivity/schedules/results.json`` (written by the ``schedules`` line of ``sensitivity.sh``) and
writes ``README.md`` and ``schedules.png`` next to it: for every arm, the per-seed differences to standard
fine-tuning (mCA and clean accuracy; the same seed means the same batches), their mean with a 95 % t-interval, the
share of the paper-default AdvBN arm's mCA gain that the arm keeps, and its training cost as a ratio to standard
(per-seed ratios of training seconds in the recipe runs).

Run from the repository root: ``python recipes/cifar10/summarize_schedules.py``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

FOLDER = Path("recipes/cifar10/results/sensitivity/schedules")
BENCH = Path("bench/results/attack_cost.md")
# recipe arm -> its row in bench/attack_cost.py's table (same AdvBN options)
BENCH_ARMS = {
    "advbn": "AdvBN 6 steps (paper default)",
    "advbn_rs2": "AdvBN 2 steps, random start",
    "advbn_fgsm_rs": "AdvBN FGSM-RS (1 step of 1.375, random start)",
    "advbn_warm1": "AdvBN 1 step, warm start",
    "advbn_every4": "AdvBN 6 steps every 4th step",
    "advbn_quarter": "AdvBN 6 steps on 1/4 of the batch",
    "advbn_warm1_quarter": "AdvBN 1 warm step on 1/4 of the batch",
    "advbn_fgsm_rs_quarter": "AdvBN FGSM-RS on 1/4 of the batch",
}


def bench_costs(path: Path, model: str = "cifar_resnet20") -> dict[str, float]:
    """Cost ratios (x standard) of the first table for ``model`` in the committed benchmark results."""
    costs: dict[str, float] = {}
    in_model = False
    for line in path.read_text().splitlines() if path.is_file() else []:
        if line.startswith("model="):
            if costs:
                break
            in_model = line.startswith(f"model={model} ")
        elif in_model and line.startswith("| ") and line.rstrip().endswith("x |"):
            name, _, ratio = (c.strip() for c in line.strip("|").split("|"))
            costs[name] = float(ratio.rstrip("x"))
    return costs


def _interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % t-interval (nan half-width for one value)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def _cell(mean: float, half: float, signed: bool = True) -> str:
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + ("" if np.isnan(half) else f" ± {half:.2f}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def summarize(doc: dict, bench: dict[str, float] | None = None) -> tuple[list[dict], list[str]]:
    """Rows (one per arm other than standard) and the Markdown lines of the table; ``bench``: cost ratios by
    benchmark arm name (:func:`bench_costs`)."""
    bench = bench or {}
    runs: dict[str, dict[int, dict]] = {}
    for r in doc["runs"]:
        runs.setdefault(r["arm"]["name"], {})[r["seed"]] = r
    std = runs.get("standard", {})
    advbn_gain = None
    rows = []
    for arm, by_seed in runs.items():
        if arm == "standard":
            continue
        seeds = sorted(set(by_seed) & set(std))
        if not seeds:
            continue
        d_mca = [100 * (by_seed[s]["mca"] - std[s]["mca"]) for s in seeds]
        d_clean = [100 * (by_seed[s]["clean_acc_jpeg"] - std[s]["clean_acc_jpeg"]) for s in seeds]
        cost = [by_seed[s]["train_seconds"] / std[s]["train_seconds"] for s in seeds]
        row = {"arm": arm, "description": by_seed[seeds[0]]["arm"].get("description", ""), "seeds": seeds,
               "d_mca": _interval(d_mca), "d_clean": _interval(d_clean), "cost": _interval(cost),
               "up": sum(d > 0 for d in d_mca), "bench_cost": bench.get(BENCH_ARMS.get(arm, ""))}
        if arm == "advbn":
            advbn_gain = row["d_mca"][0]
        rows.append(row)
    lines = ["| arm | what | seeds | Δ mCA vs standard (95 % CI) | mCA up in | Δ clean vs standard | "
             "share of AdvBN's mCA gain | step cost vs standard (bench) | train time vs standard (recipe) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        share = "-" if not advbn_gain or row["arm"] == "advbn" else f"{100 * row['d_mca'][0] / advbn_gain:.0f} %"
        row["share"] = None if share == "-" else row["d_mca"][0] / advbn_gain
        lines.append(f"| {row['arm']} | {row['description']} | {len(row['seeds'])} | {_cell(*row['d_mca'])} | "
                     f"{row['up']} of {len(row['seeds'])} | {_cell(*row['d_clean'])} | {share} | "
                     f"{_ratio(row['bench_cost'])} | "
                     f"{_cell(*row['cost'], signed=False)}x |")
    return rows, lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        (m, h), c = row["d_mca"], row["bench_cost"] or row["cost"][0]
        ax.errorbar(c, m, yerr=None if np.isnan(h) else h, fmt="o", capsize=3)
        ax.annotate(row["arm"], (c, m), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("cost of a training step vs standard fine-tuning (x, bench/attack_cost.py, ResNet-20)")
    ax.set_ylabel("Δ mCA vs standard (points, 95 % CI)")
    ax.set_title("AdvBN attack schedules: robustness gain against cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=FOLDER, help="recipe output folder with results.json")
    ap.add_argument("--bench", type=Path, default=BENCH, help="bench/attack_cost.py results (Markdown)")
    args = ap.parse_args(argv)
    doc = json.loads((args.folder / "results.json").read_text())
    rows, table = summarize(doc, bench_costs(args.bench))
    cfg = doc["config"]
    lines = ["# AdvBN attack schedules: robustness per cost (ResNet-20, the full recipe's evaluation)", "",
             f"{cfg['steps']} steps x {cfg['batch_size']} images, lr {cfg['lr']}, seeds {cfg['seeds']}, "
             f"{cfg['eval_images']} test images x all corruptions x 5 severities. Every arm is compared with "
             "standard fine-tuning of the same seed (same batches); intervals are 95 % t-intervals over the "
             "per-seed differences. Step cost: `bench/results/attack_cost.md` (CIFAR ResNet-20, batch 64, all arms "
             "interleaved, process CPU time); train time: per-seed ratio of the recipe runs' wall-clock training "
             "seconds (runs that shared the machine, so only indicative).",
             "", *table, "", "![gain against cost](schedules.png)", "",
             "Made by `bash recipes/cifar10/sensitivity.sh` (the `schedules` line) and "
             "`python recipes/cifar10/summarize_schedules.py`."]
    (args.folder / "README.md").write_text("\n".join(lines) + "\n")
    plot(rows, args.folder / "schedules.png")
    print("\n".join(table))


if __name__ == "__main__":
    main()
