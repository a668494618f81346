"""Compatibility check: the core tests against the oldest and the newest supported torch / torchvision / timm.

Each configuration gets a fresh virtual environment: its torch stack is installed first (as a user who already has
torch), then this checkout (`pip install -e .`, the core only: no extra) and pytest. The script records whether
installing advbn-aug left that torch in place, the versions it ended up with, and the result of the core tests,
and rewrites docs/compatibility.md (rows of configurations not run this time are kept).

    python bench/compat.py                          # oldest, pinned and newest (several GB of downloads each)
    python bench/compat.py --config oldest pinned   # a subset; --full runs the seven core test files entirely

Rows are merged into docs/compatibility.json when the run ends: run several configurations in one invocation rather
than in parallel invocations (the last to finish would drop the others' rows). On a machine whose pip finds a
CPU-only torch build on a local path (find-links), point PIP_FIND_LINKS elsewhere for "oldest": PyPI's torchvision
needs PyPI's torch.

Configurations:
  oldest  torch, torchvision, timm and kornia at the lower bounds declared in pyproject.toml
  pinned  the exact versions behind the committed results (constraints.txt)
  newest  the newest torch, torchvision, timm and kornia the package index serves (any pip constraint file set in
          the environment, such as a machine-wide cap, is overridden for this one)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "compatibility.md"
DATA = ROOT / "docs" / "compatibility.json"
STACK = ("torch", "torchvision", "timm", "kornia")
CORE_FILES = ("tests/feature/test_advbn.py", "tests/split/test_split.py", "tests/feature/test_dual_norm.py",
              "tests/feature/test_mixstyle.py", "tests/feature/test_dsu.py", "tests/test_policy.py",
              "tests/integrations/test_timm.py")
# the default subset: every core feature, minutes not hours on a 2-core machine (--full runs CORE_FILES)
CORE_TESTS = (
    "tests/test_extras.py",
    "tests/feature/test_advbn.py::test_matches_hand_written_algorithm[cifar_resnet20-fx]",
    "tests/feature/test_advbn.py::test_matches_hand_written_algorithm[timm_resnet18-fx]",
    "tests/feature/test_advbn.py::test_matches_hand_written_algorithm[timm_vit_tokens-hook]",
    "tests/feature/test_advbn.py::test_eval_mode_is_bitwise_identical",
    "tests/feature/test_advbn.py::test_detach_round_trip",
    "tests/feature/test_advbn.py::test_autocast_bfloat16_keeps_float32_statistics",
    "tests/feature/test_advbn.py::test_channels_last",
    "tests/feature/test_advbn.py::test_deepcopy_and_model_ema",
    "tests/feature/test_advbn.py::test_fx_tracing_an_attached_model",
    "tests/split/test_split.py::test_suffix_reproduces_the_model",
    "tests/split/test_split.py::test_every_fallback_warns",
    "tests/feature/test_dual_norm.py",
    "tests/feature/test_mixstyle.py",
    "tests/feature/test_dsu.py",
    "tests/test_policy.py",
    "tests/integrations/test_timm.py::TestTrainer::test_runs_with_augmix_jsd_ema_and_saves_plain_checkpoints",
    "tests/integrations/test_timm.py::test_task_with_policy_undoes_loader_normalisation",
    "tests/integrations/test_timm.py::test_aux_bn_kept_exactly_during_warm_up",
    "tests/integrations/test_timm.py::test_split_bn_with_advbn_no_dual_bn_trains",
    "tests/integrations/test_timm.py::test_advbn_flags_cover_every_config_field",
)


def lower_bounds() -> dict[str, str]:
    """``{name: version}`` for the torch stack's ``>=`` bounds in pyproject.toml."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)(,.*)?", dep.strip())
        if m and m.group(1).lower() in STACK:
            out[m.group(1).lower()] = m.group(2)
    missing = [n for n in STACK if n not in out]
    if missing:
        raise SystemExit(f"pyproject.toml declares no '>=' lower bound for {missing}")
    return out


def stack_requirements(config: str) -> tuple[list[str], dict[str, str]]:
    """The pip arguments that install ``config``'s torch stack, and the environment they run with."""
    env: dict[str, str] = {}
    if config == "oldest":
        return [f"{n}=={v}" for n, v in lower_bounds().items()], env
    if config == "pinned":
        return [*STACK, "-c", str(ROOT / "constraints.txt")], env
    if config == "newest":
        env["PIP_CONSTRAINT"] = os.devnull  # a machine-wide cap would make "newest" mean "the cap"
        return ["--upgrade", *STACK], env
    raise SystemExit(f"unknown configuration {config!r}: choose from oldest, pinned, newest")


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float | None = None) -> int:
    """Run ``cmd`` appending its output to ``log``; return the exit code (124 on a timeout)."""
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                  cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            fh.write(f"\n[timed out after {timeout:.0f} s]\n")
            return 124


def _versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, platform\n"
            f"out = {{'python': platform.python_version()}}\n"
            f"for n in {[*STACK, 'numpy']!r}:\n"
            "    try:\n        out[n] = m.version(n)\n    except m.PackageNotFoundError:\n        out[n] = '-'\n"
            "print(json.dumps(out))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def _summary(log_text: str) -> str:
    """pytest's closing counts (``"52 passed, 1 skipped"``) from a log, or ``""``."""
    found = re.findall(r"^=*\s*((?:\d+ \w+(?:, )?)+) in [0-9.]+s", log_text, flags=re.M)
    return found[-1].strip().rstrip(",") if found else ""


def check(config: str, work: Path, tests: list[str], timeout: float) -> dict:
    """Build ``config``'s venv under ``work``, install, run ``tests``; return one row of the table."""
    log = work / f"{config}.log"
    log.write_text(f"# {config}\n")
    venv = work / config
    python = venv / "bin" / "python"
    row: dict = {"config": config, "date": _dt.date.today().isoformat(), "platform": platform.machine(),
                 "log": str(log)}
    start = time.monotonic()
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    args, env = stack_requirements(config)
    if _run([sys.executable, "-m", "venv", str(venv)], log) or _run([*pip, *args], log, env=env, timeout=timeout):
        row.update(result="torch stack did not install", **_versions(python))
        return row
    before = _versions(python)
    smoke = _run([str(python), "-c", "import torch, torchvision, timm, kornia; torchvision.ops.nms"], log)
    if smoke:
        row.update(result="torch stack does not import (see the log)", **before)
        return row
    # the user's torch is in place: installing advbn-aug (core, no extra) must keep it
    if _run([*pip, "-e", str(ROOT), "pytest"], log, env=env, timeout=timeout):
        row.update(result="advbn-aug did not install", **before)
        return row
    after = _versions(python)
    row.update(after)
    row["torch_kept"] = all(before.get(n) == after.get(n) for n in ("torch", "torchvision"))
    left = max(60.0, timeout - (time.monotonic() - start))
    code = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], log,
                env={"NO_ALBUMENTATIONS_UPDATE": "1"}, timeout=left)
    counts = _summary(log.read_text())
    row["tests"] = counts or "-"
    row["result"] = "pass" if code == 0 else ("timed out" if code == 124 else f"FAIL (pytest exit {code})")
    row["minutes"] = round((time.monotonic() - start) / 60, 1)
    return row


def render(rows: dict[str, dict], scope: str) -> str:
    """docs/compatibility.md from the stored rows."""
    order = [c for c in ("oldest", "pinned", "newest") if c in rows]
    lines = [
        "# Compatibility",
        "",
        "`pyproject.toml` declares the supported ranges; `constraints.txt` pins the versions behind the committed",
        "results. `python bench/compat.py` rebuilds this table: for each configuration a fresh virtual environment",
        "gets its torch stack first, then `pip install -e .` (the core, no extra) and pytest, and runs the core tests",
        f"({scope}). *torch kept*: installing advbn-aug left the torch and torchvision already there in place.",
        "",
        "| config | python | torch | torchvision | timm | kornia | numpy | torch kept | tests | result | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in order:
        r = rows[c]
        kept = {True: "yes", False: "NO"}.get(r.get("torch_kept"), "-")
        cells = [c, *(r.get(k, "-") for k in ("python", "torch", "torchvision", "timm", "kornia", "numpy")),
                 kept, r.get("tests", "-"), r.get("result", "-"), r.get("date", "-")]
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    notes = [r["note"] for c in order if (r := rows[c]).get("note")]
    if notes:
        lines += ["", "Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", nargs="+", default=["oldest", "pinned", "newest"],
                   choices=["oldest", "pinned", "newest"])
    p.add_argument("--full", action="store_true", help="run the seven core test files entirely, not the subset")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per configuration (install + tests)")
    p.add_argument("--work", type=Path, help="write the logs here (default: a temporary folder, removed)")
    p.add_argument("--keep-venvs", action="store_true", help="keep each venv (under --work); a CUDA torch one is ~6 GB")
    p.add_argument("--no-write", action="store_true", help="print the table, leave docs/ alone")
    args = p.parse_args(argv)
    tests = list(CORE_FILES if args.full else CORE_TESTS)
    rows: dict[str, dict] = json.loads(DATA.read_text()) if DATA.exists() else {}
    work = args.work or Path(tempfile.mkdtemp(prefix="advbn-compat-"))
    work.mkdir(parents=True, exist_ok=True)
    failed = False
    try:
        for config in args.config:
            row = check(config, work, tests, args.timeout)
            row["scope"] = "full" if args.full else "subset"
            row["note"] = rows.get(config, {}).get("note", "")
            print(json.dumps(row), flush=True)
            failed |= row["result"] != "pass" or row.get("torch_kept") is False
            if not args.keep_venvs:
                shutil.rmtree(work / config, ignore_errors=True)
            row.pop("log")
            rows[config] = row
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    scope = ("the seven core test files" if args.full else
             "`CORE_TESTS` in `bench/compat.py`: AdvBN, split, dual norm, MixStyle, DSU, Policy, the timm task and "
             "the core-only import test")
    text = render(rows, scope)
    print(text)
    if not args.no_write:
        DOC.parent.mkdir(exist_ok=True)
        DATA.write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
        DOC.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
