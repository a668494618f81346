"""bench/gpu_check.py in its CPU mode (what CI can run): every CPU-capable check passes, the table has every row, and
the exit code is 0 (about 25 s of CPU time: ResNet-18 at 32 px, batch 4, one thread)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = (
    "AdvBN fp32 (resnet18 32 px, batch 4)",
    "AdvBN bf16 autocast",
    "AdvBN fp16 autocast + GradScaler",
    "AdvBN channels_last",
    "AdvBN + torch.compile",
    "Policy: batched AugMix + AdvBN on the device",
    "evaluate_corruptions on the device",
    "timm trainer, torchrun --nproc_per_node 1 (gloo)",
    "step cost fp32: AdvBN / standard",
    "step cost bf16: AdvBN / standard",
)


@pytest.mark.slow
def test_cpu_mode_runs_every_check_and_writes_the_table(tmp_path):
    out = tmp_path / "gpu_check.md"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu", "--output", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "no CUDA device" in proc.stdout or "--cpu" in proc.stdout
    table = out.read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| check")}
    assert list(rows) == list(ROWS), table
    assert set(rows.values()) == {"PASS"}, table


def test_a_failing_check_is_reported_the_others_still_run_and_the_exit_code_is_1(monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    setup = gpu_check._setup(cuda=False)
    calls = []

    def broken() -> str:
        raise RuntimeError("boom\nsecond line")

    def fine() -> str:
        calls.append(1)
        return "ok"

    monkeypatch.setattr(gpu_check, "_checks", lambda s: [("first", broken), ("second", fine)])
    rows = gpu_check.run_checks(setup)
    assert [(r["check"], r["result"], r["detail"]) for r in rows] == [
        ("first", "FAIL", "RuntimeError: boom second line"), ("second", "PASS", "ok")]
    assert calls == [1]
    monkeypatch.setattr(gpu_check.torch, "set_num_threads", lambda n: None)  # main() sets 1 thread in CPU mode
    assert gpu_check.main(["--cpu", "--output", str(tmp_path / "t.md")]) == 1
    assert "| first | FAIL | RuntimeError: boom second line |" in (tmp_path / "t.md").read_text()
