"""Gather the finished runs whose Stylized-CIFAR-10 numbers come from one set into one folder, so that
`advbn-aug recipe cifar10 --collect` can build a table in which every Stylized pair is on that set.

Each machine generates its own Stylized set (recipes/cifar10/README.md), so the committed table pairs Stylized
numbers only within a set and drops the rest. A run retrained on the machine that evaluated the other arm of a
pair fills that gap. This script copies each `<root>/<arm>/seed<k>/result.json` whose Stylized entry records the
given set sha256 to `<out>/runs/<arm>/seed<k>/result.json`; a later root wins over an earlier one for the same run.
`--collect` reads its `--runs-dir` first and the table's own `runs/` (where the retrained runs are committed) after,
so the committed runs are gathered into a scratch folder rather than copied into the repository again:

    python recipes/cifar10/gather_one_set.py 74e373bf5a04 /tmp/gathered recipes/cifar10/results/runs
    advbn-aug recipe cifar10 --collect --output recipes/cifar10/results/one_set --runs-dir /tmp/gathered/runs
"""
import argparse
import json
import shutil
from pathlib import Path

from advbn_aug.recipe.cifar10.stylized_sets import run_set


def gather(prefix: str, out: Path, roots: list[Path]) -> dict[str, Path]:
    """Copy the matching result.json files; returns ``{"arm/seedk": source}``."""
    if len(prefix) < 8:
        raise SystemExit(f"set sha256 prefix {prefix!r} is too short: give at least 8 hex digits")
    chosen: dict[str, Path] = {}
    for root in roots:
        if not root.is_dir():
            raise SystemExit(f"{root} is not a folder of runs (<arm>/seed<k>/result.json)")
        for f in sorted(root.glob("*/seed*/result.json")):
            sha = run_set(json.loads(f.read_text()))
            if sha is not None and sha.startswith(prefix):
                chosen[f"{f.parent.parent.name}/{f.parent.name}"] = f
    for run, src in chosen.items():
        dst = out / "runs" / run / "result.json"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_sha256", help="the Stylized set's sha256 (or a prefix of at least 8 hex digits)")
    ap.add_argument("output", type=Path, help="the table's folder; the runs go to <output>/runs")
    ap.add_argument("roots", type=Path, nargs="+", help="folders of runs, <arm>/seed<k>/result.json")
    args = ap.parse_args()
    chosen = gather(args.set_sha256, args.output, args.roots)
    for run, src in chosen.items():
        print(f"{run}: {src}")
    print(f"{len(chosen)} runs on set {args.set_sha256[:12]} -> {args.output / 'runs'}")


if __name__ == "__main__":
    main()
