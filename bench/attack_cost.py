"""Cost of one training step with each AdvBN attack schedule, as a ratio to standard fine-tuning.

Arms (all with the same frozen prefix, so all train the same parameters):

* standard fine-tuning;
* AdvBN, the paper's 6-step attack (the default);
* AdvBN, the same 6 steps with convolution + BatchNorm pairs folded for the attack passes (``fold_bn=True``), or
  with the attack's downstream layers compiled (``compile_attack=True``); both give the same multipliers;
* the cheaper schedules: 2 steps from a random start, FGSM with a random start (1 step of 1.25 x eps), one step
  per batch warm-started from the previous batch's multipliers, the 6-step attack on every 4th step, and the attack
  plus adversarial term on a quarter of each batch (``adv_fraction=0.25``, the Fast AdvProp form).

All arms are measured interleaved in one run (medians over rounds); on CPU the timer is process CPU time with one
thread, on CUDA wall-clock time with synchronisation. ``--profile`` adds a ``torch.profiler`` table of one default
AdvBN step (where the time goes).

    python bench/attack_cost.py                                         # CIFAR ResNet-20, batch 64, 32 px
    python bench/attack_cost.py --model resnet18 --img-size 64 --batch-size 32
    python bench/attack_cost.py --model convnext_atto --img-size 64 --batch-size 32
    python bench/attack_cost.py --device cuda --model resnet18 --img-size 224 --batch-size 64
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from advbn_aug import AdvBN, cifar_resnet

# arm name -> AdvBN options (None: standard fine-tuning)
ARMS: dict[str, dict[str, Any] | None] = {
    "standard fine-tuning": None,
    "AdvBN 6 steps (paper default)": {},
    "AdvBN 6 steps, fold_bn": {"fold_bn": True},
    "AdvBN 6 steps, compile_attack": {"compile_attack": True},
    "AdvBN 2 steps, random start": {"steps": 2, "random_start": True},
    "AdvBN FGSM-RS (1 step of 1.375, random start)": {"steps": 1, "random_start": True, "step_size": 1.375},
    "AdvBN 1 step, warm start": {"steps": 1, "warm_start": True},
    "AdvBN 6 steps every 4th step": {"attack_every": 4},
    "AdvBN 6 steps on 1/4 of the batch": {"adv_fraction": 0.25},
    "AdvBN 1 warm step on 1/4 of the batch": {"steps": 1, "warm_start": True, "adv_fraction": 0.25},
    "AdvBN FGSM-RS on 1/4 of the batch": {"steps": 1, "random_start": True, "step_size": 1.375, "adv_fraction": 0.25},
    "AdvBN FGSM-RS on 1/4 of the batch, fold_bn": {"steps": 1, "random_start": True, "step_size": 1.375,
                                                    "adv_fraction": 0.25, "fold_bn": True},
}

_LAYERS = {"resnet": "layer1", "convnext": "stages.0"}


def _model(name: str) -> tuple[nn.Module, str]:
    if name.startswith("cifar_resnet"):
        return cifar_resnet(int(name.removeprefix("cifar_resnet"))), "layer1"
    import timm

    layer = next((v for k, v in _LAYERS.items() if name.startswith(k)), None)
    if layer is None:
        raise SystemExit(f"no default layer for --model {name!r}: use cifar_resnet20/56, a timm resnet* or convnext*")
    return timm.create_model(name, pretrained=False, num_classes=10), layer


def _arm(name: str, options: dict[str, Any] | None, device: torch.device):
    torch.manual_seed(0)
    model, layer = _model(name)
    model.to(device)
    if options is None:  # standard: the same frozen prefix, no adversarial term
        adv = AdvBN(layer, dual_bn=False).attach(model)

        def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            loss = F.cross_entropy(model(x), y)
            adv.discard()
            return loss
    else:
        adv = AdvBN(layer, **options).attach(model)
        step = adv.loss
    model.train()
    return step, [p for p in model.parameters() if p.requires_grad]


def _profile(step, opt, x: torch.Tensor, y: torch.Tensor, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with profile(activities=acts) as prof:
        opt.zero_grad(set_to_none=True)
        step(x, y).backward()
        opt.step()
    key = "self_cuda_time_total" if x.is_cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cifar_resnet20")
    ap.add_argument("-b", "--batch-size", type=int, default=64)
    ap.add_argument("--img-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per arm per round (a multiple of 4 keeps the "
                                                         "every-4th arm's mix exact)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=4, help="untimed steps per arm first (includes compiling)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    ap.add_argument("--arms", nargs="+", default=None, help="a subset of the arm names (default: all)")
    ap.add_argument("--profile", type=int, default=0, metavar="ROWS",
                    help="print a torch.profiler table (ROWS rows) of one default AdvBN step")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    names = args.arms or list(ARMS)
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    if "standard fine-tuning" not in names:
        names.insert(0, "standard fine-tuning")
    arms = {n: _arm(args.model, ARMS[n], device) for n in names}
    opts = {n: torch.optim.SGD(params, lr=1e-3, momentum=0.9) for n, (_, params) in arms.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)

    def run(name: str, n: int) -> None:
        step, _ = arms[name]
        for _ in range(n):
            opts[name].zero_grad(set_to_none=True)
            step(x, y).backward()
            opts[name].step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    for name in names:
        run(name, args.warmup)
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            t0 = clock()
            run(name, args.steps)
            times[name].append((clock() - t0) / args.steps * 1000)
    med = {n: statistics.median(v) for n, v in times.items()}
    base = med["standard fine-tuning"]
    timer = "process CPU time" if device.type == "cpu" else "wall clock"
    print(f"model={args.model} batch={args.batch_size} img={args.img_size} device={device} "
          f"threads={torch.get_num_threads()} timer={timer} rounds={args.rounds}x{args.steps} steps (medians)")
    print("| arm | ms/step | vs standard |\n|---|---:|---:|")
    for n in names:
        print(f"| {n} | {med[n]:.1f} | {med[n] / base:.2f}x |")
    if args.profile:
        default = "AdvBN 6 steps (paper default)"
        step, params = arms[default] if default in arms else _arm(args.model, {}, device)
        opt = opts.get(default) or torch.optim.SGD(params, lr=1e-3)
        print(f"\ntorch.profiler, one step of '{default}':\n")
        print(_profile(step, opt, x, y, args.profile))


if __name__ == "__main__":
    main()
