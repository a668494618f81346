"""One command that checks the GPU paths: AdvBN on timm ResNet-50 at 224 px in fp32, bf16 autocast and fp16 autocast
with a GradScaler, channels_last, torch.compile, Policy with the batched AugMix on the device, evaluate_corruptions
on the device, the timm trainer (advbn_aug.integrations) under torchrun with NCCL, and the AdvBN / standard step cost.

    python bench/gpu_check.py                 # on one GPU, under 4 minutes; writes bench/results/gpu_check.md
    python bench/gpu_check.py --output x.md   # anywhere else

Each check catches its own exception and is reported as FAIL with the message, so one broken path does not hide the
others; the exit code is 1 when any check FAILs. Without CUDA the script says so and runs what the CPU can, on tiny
inputs (ResNet-18 at 32 px, batch 4, gloo instead of NCCL, torch.compile with the "eager" backend) as a smoke test;
it then writes no file unless --output is given.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "gpu_check.md"


@dataclass
class Setup:
    """Sizes of one run: the GPU check proper, or the CPU smoke test."""

    device: torch.device
    model: str
    img_size: int
    batch_size: int
    eval_images: int
    cost_steps: int
    compile_backend: str
    dist_backend: str
    timeout: float
    attack_steps: int  # AdvBN's PGD steps in the functional checks (the step-cost rows use the paper's 6)
    train_steps: int


def _setup(cuda: bool) -> Setup:
    if cuda:
        return Setup(torch.device("cuda"), "resnet50", 224, 32, 64, 10, "inductor", "nccl", 240.0, 6, 2)
    return Setup(torch.device("cpu"), "resnet18", 32, 4, 8, 1, "eager", "gloo", 120.0, 1, 1)


def _model(s: Setup, channels_last: bool = False) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    m = timm.create_model(s.model, pretrained=False, num_classes=10).to(s.device)
    return m.to(memory_format=torch.channels_last) if channels_last else m


def _batch(s: Setup, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s.batch_size, 3, s.img_size, s.img_size, generator=g).to(s.device)
    y = torch.randint(0, 10, (s.batch_size,), generator=g).to(s.device)
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def _finite(loss: torch.Tensor) -> float:
    value = float(loss.detach())
    if not np.isfinite(value):
        raise RuntimeError(f"the loss is not finite: {value}")
    return value


def _advbn_steps(s: Setup, dtype: torch.dtype | None, *, channels_last: bool = False, compiled: bool = False) -> str:
    """``s.train_steps`` AdvBN training steps (``s.attack_steps`` attack steps) under autocast ``dtype`` (None: fp32)
    """
    from advbn_aug import AdvBN

    model = _model(s, channels_last)
    adv = AdvBN("layer1", steps=s.attack_steps).attach(model)
    run = torch.compile(model, backend=s.compile_backend) if compiled else model
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler(s.device.type) if dtype == torch.float16 else None
    x, y = _batch(s, channels_last)
    model.train()
    losses = []
    for _ in range(s.train_steps):
        ctx = torch.autocast(s.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            loss = adv.loss(x, y, model=run)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        losses.append(_finite(loss))
    m, sd = adv.last_multipliers
    detail = f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, split {adv.split.mode}, m in [{float(m.min()):.2f}, " \
             f"{float(m.max()):.2f}]"
    if scaler is not None:
        detail += f", scale {scaler.get_scale():.0f}"
    if compiled:
        detail += f", backend {s.compile_backend}"
    adv.detach()
    return detail


def check_policy(s: Setup) -> str:
    """Policy: batched AugMix (2 views + JSD) on the device and AdvBN, from uint8 images on the device."""
    from advbn_aug import Policy, PolicyConfig

    cfg = PolicyConfig(augmix={"severity": 3, "width": 3}, num_views=2,
                       features=[{"type": "advbn", "layer": "layer1", "steps": s.attack_steps}],
                       mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    policy = Policy(cfg).to(s.device)
    model = policy.attach(_model(s))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (s.batch_size, 3, s.img_size, s.img_size), dtype=torch.uint8, generator=g)
    targets = torch.randint(0, 10, (s.batch_size,), generator=g)
    model.train()
    loss, info = policy.step(model, images.to(s.device), targets.to(s.device), epoch=0, step=0)
    loss.backward()
    policy.detach()
    terms = ", ".join(f"{k} {float(v):.3f}" for k, v in info.items() if isinstance(v, (float, int, torch.Tensor))
                      and torch.as_tensor(v).numel() == 1)
    return f"loss {_finite(loss):.3f}" + (f" ({terms})" if terms else "")


def check_eval(s: Setup) -> str:
    """evaluate_corruptions on the device (3 corruptions at severity 3, random images: the path, not accuracy)."""
    from advbn_aug import evaluate_corruptions

    model = _model(s).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (s.eval_images, s.img_size, s.img_size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, s.eval_images)
    with tempfile.TemporaryDirectory() as cache:
        res = evaluate_corruptions(model, images, labels, corruptions=("gaussian_noise", "fog", "jpeg_compression"),
                                   severities=(3,), dataset="imagenet" if s.img_size >= 64 else "cifar10",
                                   device=str(s.device), amp=s.device.type == "cuda", batch_size=32,
                                   cache_dir=cache, use_cache=False, progress=False)
    return f"{len(res.accuracy)} corruptions x 1 severity on {res.num_images} images, mCA " \
           f"{100 * res.summary['mean_corruption_accuracy']:.1f} % in {res.seconds:.1f} s"


_TORCHRUN_MAIN = textwrap.dedent("""
    import json, sys
    import torch
    import torch.distributed as dist
    import timm.utils.distributed as timm_dist
    from advbn_aug.integrations.timm import trainer

    # one process: timm only starts a process group for WORLD_SIZE > 1, so make it start one anyway (NCCL on CUDA,
    # gloo on CPU) and wrap the model in DDP, as a multi-GPU run would; the trainer destroys the group at its end,
    # so its backend is read when it starts
    timm_dist.is_distributed_env = lambda: True
    seen = {}
    init = dist.init_process_group

    def init_and_record(*args, **kwargs):
        init(*args, **kwargs)
        seen.update(backend=str(dist.get_backend()), world_size=dist.get_world_size())

    dist.init_process_group = init_and_record
    result = trainer.main(sys.argv[2:])
    seen.update(ddp=type(result["task"].get_trainable_module()).__name__, epoch=result["epoch"])
    with open(sys.argv[1], "w") as fh:
        json.dump(seen, fh)
""")


def _image_folder(root: Path, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("validation", 2)):
        for c, shade in (("a", 60), ("b", 190)):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(shade, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(root / split / c / f"{i}.png")


def check_torchrun(s: Setup) -> str:
    """advbn_aug.integrations.timm.trainer under torchrun --nproc_per_node 1 (NCCL on CUDA, gloo on CPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _image_folder(root / "data", s.img_size)
        script, report = root / "run.py", root / "report.json"
        script.write_text(_TORCHRUN_MAIN)
        args = ["--data-dir", str(root / "data"), "--model", s.model, "--num-classes", "2", "--img-size",
                str(s.img_size), "-b", str(min(s.batch_size, 8)), "--epochs", "1", "--lr", "0.01", "--workers", "0",
                "--warmup-epochs", "0", "--advbn-steps", "1", "--output", str(root / "out"), "--experiment", "check",
                "--device", s.device.type]
        if s.device.type == "cuda":
            args += ["--amp", "--channels-last"]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--standalone", str(script),
               str(report), *args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=s.timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun exited {proc.returncode}: {_error_line(proc.stderr)}")
        out = json.loads(report.read_text())
    if out["backend"] != s.dist_backend:
        raise RuntimeError(f"process group backend {out['backend']!r}, expected {s.dist_backend!r}")
    return f"backend {out['backend']}, world size {out['world_size']}, {out['ddp']}, epoch {out['epoch']}"


def _timed(s: Setup, step: Callable[[], None]) -> float:
    """Median seconds of ``s.cost_steps`` calls of ``step`` after one warm-up."""
    step()
    times = []
    for _ in range(s.cost_steps):
        if s.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if s.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def check_cost(s: Setup, dtype: torch.dtype | None) -> str:
    """Median step time of standard training and of AdvBN (paper defaults) on the same model and batch."""
    from advbn_aug import AdvBN

    channels_last = s.device.type == "cuda"
    model = _model(s, channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    x, y = _batch(s, channels_last)

    def ctx():
        return torch.autocast(s.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def standard() -> None:
        with ctx():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    t_std = _timed(s, standard)
    adv = AdvBN("layer1").attach(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)

    def advbn() -> None:
        with ctx():
            loss = adv.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if s.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_adv = _timed(s, advbn)
    mem = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if s.device.type == "cuda" else ""
    adv.detach()
    n = s.batch_size
    return (f"standard {1e3 * t_std:.0f} ms ({n / t_std:.0f} img/s), AdvBN {1e3 * t_adv:.0f} ms "
            f"({n / t_adv:.0f} img/s): {t_adv / t_std:.2f}x{mem}")


def _error_line(text: str) -> str:
    """The worker's exception line from torchrun's stderr (its own summary ends with a row of '=')."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error:" in ln or "Exception:" in ln]
    return (errors[0] if errors else lines[-1] if lines else "")[:300]


def _checks(s: Setup) -> list[tuple[str, Callable[[], str]]]:
    cuda = s.device.type == "cuda"
    size = f"{s.model} {s.img_size} px, batch {s.batch_size}"
    return [
        (f"AdvBN fp32 ({size})", lambda: _advbn_steps(s, None)),
        ("AdvBN bf16 autocast", lambda: _advbn_steps(s, torch.bfloat16)),
        ("AdvBN fp16 autocast + GradScaler", lambda: _advbn_steps(s, torch.float16)),
        ("AdvBN channels_last" + (" + bf16" if cuda else ""),
         lambda: _advbn_steps(s, torch.bfloat16 if cuda else None, channels_last=True)),
        ("AdvBN + torch.compile", lambda: _advbn_steps(s, torch.bfloat16 if cuda else None, compiled=True)),
        ("Policy: batched AugMix + AdvBN on the device", lambda: check_policy(s)),
        ("evaluate_corruptions on the device", lambda: check_eval(s)),
        (f"timm trainer, torchrun --nproc_per_node 1 ({s.dist_backend})", lambda: check_torchrun(s)),
        ("step cost fp32: AdvBN / standard", lambda: check_cost(s, None)),
        ("step cost bf16" + (" channels_last" if cuda else "") + ": AdvBN / standard",
         lambda: check_cost(s, torch.bfloat16)),
    ]


def run_checks(s: Setup) -> list[dict]:
    rows = []
    for name, fn in _checks(s):
        t0 = time.perf_counter()
        try:
            detail, result = fn(), "PASS"
        except Exception as exc:  # one broken path must not hide the others
            detail, result = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:400], "FAIL"
            traceback.print_exc()
        rows.append({"check": name, "result": result, "detail": detail, "seconds": time.perf_counter() - t0})
        print(f"{result:4}  {name}: {detail}", flush=True)
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def format_table(rows: list[dict], s: Setup) -> str:
    import timm

    device = torch.cuda.get_device_name(0) if s.device.type == "cuda" else f"CPU ({os.cpu_count()} cores), no CUDA"
    head = [f"device: {device}; torch {torch.__version__}, timm {timm.__version__}, python "
            f"{sys.version.split()[0]}; {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
            "", "| check | result | detail | s |", "|---|---|---|---:|"]
    body = [f"| {r['check']} | {r['result']} | {r['detail'].replace('|', '/')} | {r['seconds']:.1f} |" for r in rows]
    return "\n".join(head + body) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", type=Path, help=f"markdown file (default on CUDA: {DEFAULT_OUTPUT.relative_to(ROOT)})")
    p.add_argument("--cpu", action="store_true", help="the CPU smoke test even where CUDA is available")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda:
        print("no CUDA device: running the CPU-capable checks on tiny inputs (resnet18, 32 px, batch 4, gloo)")
        torch.set_num_threads(1)  # a smoke test: one thread is the fastest on a small, shared CPU
    s = _setup(cuda)
    start = time.perf_counter()
    rows = run_checks(s)
    table = format_table(rows, s)
    total = time.perf_counter() - start
    print()
    print(table)
    print(f"total {total:.0f} s")
    output = args.output or (DEFAULT_OUTPUT if cuda else None)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        cmd = " ".join(["python bench/gpu_check.py", *(argv if argv is not None else sys.argv[1:])])
        output.write_text(f"# GPU check\n\n`{cmd}`, {total:.0f} s in all.\n\n" + table)
        print(f"wrote {output}")
    return 1 if any(r["result"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
