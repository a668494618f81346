"""``AdvBNConfig``: every AdvBN option, declared once with its help text; the defaults are the paper's.

``AdvBN(...)``'s keyword arguments, the recipe flags and the timm ``--advbn-*`` flags are all derived from these
fields (:mod:`advbn_aug.config`), so a new option reaches every interface by being added here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_type_hints

from advbn_aug.config import DictConfig
from advbn_aug.split import SplitMode

__all__ = ["AdvBNConfig", "Clamp", "CaptureMode", "Layout", "AttackLoss", "StatsLevel", "init_signature",
           "init_docstring"]

Clamp = float | None | Literal["auto"]
CaptureMode = Literal["check", "copy"]
Layout = Literal["auto", "nchw", "nhwc"]
AttackLoss = Literal["ce", "kl"]
StatsLevel = Literal["batch", "instance"]


def _opt(default: Any, help: str, **kw: Any) -> Any:
    """A config field with its help text (the one place an option is documented; every CLI derives from it)."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class AdvBNConfig(DictConfig):
    """AdvBN settings; the defaults are the paper's (``docs/algorithm.md``).

    Every option is declared here once with its help text; ``AdvBN(...)`` keyword arguments, the recipe flags and
    the timm ``--advbn-*`` flags are derived from these fields (:mod:`advbn_aug.config`).
    """

    layer: str | int = _opt("layer1", "module name (layer1, stages.0, blocks.5) or timm feature_info index to "
                                      "attack after", metavar="NAME")
    eps: float = _opt(1.1, "statistics multipliers stay in [1 - eps, 1 + eps]", metavar="EPS")
    step_size: float = _opt(0.2, "PGD sign-step size on the multipliers", metavar="S")
    steps: int = _opt(6, "PGD steps on the multipliers (0: no attack, unperturbed features)", metavar="N")
    attack_loss: AttackLoss = _opt("ce", "what the attack maximises: 'ce', the criterion with the targets (the "
                                         "paper); 'kl', KL(prediction on the unperturbed feature || prediction on "
                                         "the perturbed one), label-free (segmentation, detection, self-supervised; "
                                         "starts from a random point, where the KL has a gradient)")
    extra_layers: tuple[str, ...] = _opt((), "further layers after `layer` whose output statistics the same attack "
                                             "perturbs, each with its own (m, s) (multi-layer AdvBN)", metavar="NAME")
    stats: StatsLevel = _opt("batch", "'batch': one (m, s) per channel shared by the batch, statistics over (N, H, W) "
                                      "(the paper); 'instance': one (m, s) per sample and channel, statistics of each "
                                      "sample over (H, W)")
    random_start: bool = _opt(False, "start the attack at a uniform draw in the box instead of (1, 1); with steps=1 "
                                     "and a large step_size (e.g. 1.25 * eps) this is FGSM with a random start")
    warm_start: bool = _opt(False, "start each attack from the previous batch's multipliers (the 'free' adversarial "
                                   "training form; use with steps=1 or 2)")
    attack_every: int = _opt(1, "run the attack on every k-th training step and reuse the last multipliers in "
                                "between (the adversarial loss term is still computed every step)", metavar="K")
    adv_fraction: float = _opt(1.0, "attack and train the adversarial term on the first ceil(r * N) samples of each "
                                    "batch only (the Fast AdvProp form; fx split only); 1: the whole batch",
                               metavar="R")
    fold_bn: bool = _opt(False, "fold each convolution + BatchNorm pair of the downstream layers into one "
                                "convolution for the attack passes (fx split only; the same multipliers up to float "
                                "rounding)")
    compile_attack: bool = _opt(False, "torch.compile the downstream layers for the attack passes (fx split only; "
                                       "one-time compile; pays off on GPUs, measured slower on CPU)")
    clamp_min: Clamp = _opt("auto", "lower clamp of perturbed (N, C, H, W) features: 'auto' clamps at 0 exactly when "
                                    "the layer output is non-negative on the first training batch (post-ReLU), "
                                    "a number forces that clamp, 'none' disables it", metavar="V")
    token_clamp_min: Clamp = _opt(None, "the same for (N, T, C) token features (tokens are not post-ReLU: off by "
                                        "default)", metavar="V")
    dual_bn: bool = _opt(True, "give downstream BatchNorms an adversarial copy (AdvProp-style auxiliary BN)")
    dual_ln: bool = _opt(False, "also duplicate downstream LayerNorm/GroupNorm (no running statistics: shared by "
                                "default)")
    freeze_prefix: bool = _opt(True, "freeze the layers up to and including the layer (no gradients, BatchNorm in "
                                     "eval mode), as the paper's fine-tuning does")
    split: SplitMode = _opt("auto", "how the downstream layers are run: torch.fx suffix graph, hook substitution, or "
                                    "auto (fx, falling back to hooks with a warning)")
    layout: Layout = _opt("auto", "memory layout of a 4-D layer output: 'auto' reads (N, C, H, W) and refuses outputs "
                                  "that look channels-last, 'nchw' forces (N, C, H, W), 'nhwc' for channels-last stage "
                                  "outputs (Swin); 3-D outputs are always tokens (N, T, C)")
    capture: CaptureMode = _opt("check", "'check': keep the layer output by reference and raise if an in-place op "
                                         "downstream changes it; 'copy': keep a private copy (one feature of memory)")
    check_finite: bool = _opt(True, "raise on non-finite features instead of training on them; each training forward "
                                    "then copies the norm layers' running statistics, which a refused step restores")

    def __post_init__(self) -> None:
        if not isinstance(self.layer, (str, int)) or isinstance(self.layer, bool) or self.layer == "":
            raise ValueError(f"layer must be a module name or a feature_info index, got {self.layer!r}")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0 (the multiplier box is [1 - eps, 1 + eps]), got {self.eps}")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}; use steps=0 to disable the attack")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {self.steps!r}")
        if not isinstance(self.attack_every, int) or isinstance(self.attack_every, bool) or self.attack_every < 1:
            raise ValueError(f"attack_every must be an integer >= 1 (1: attack every step), got {self.attack_every!r}")
        if isinstance(self.adv_fraction, bool) or not 0 < self.adv_fraction <= 1:
            raise ValueError(f"adv_fraction must be in (0, 1] (the share of each batch that is attacked), got "
                             f"{self.adv_fraction!r}")
        for name in ("clamp_min", "token_clamp_min"):
            v = getattr(self, name)
            if not (v is None or v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool))):
                raise ValueError(f"{name} must be 'auto', a number or None, got {v!r}")
        if self.split not in ("auto", "fx", "hook"):
            raise ValueError(f"split must be 'auto', 'fx' or 'hook', got {self.split!r}")
        self.extra_layers = tuple(self.extra_layers)
        if any(not isinstance(x, str) or not x for x in self.extra_layers) or self.layer in self.extra_layers:
            raise ValueError(f"extra_layers must be module names other than layer {self.layer!r}, got "
                             f"{list(self.extra_layers)}")
        if self.extra_layers and (self.stats == "instance" or self.warm_start or self.attack_every > 1):
            raise ValueError("extra_layers (multi-layer AdvBN) works with stats='batch' and a fresh attack every step: "
                             "drop stats='instance' / warm_start / attack_every")
        if self.stats not in ("batch", "instance"):
            raise ValueError(f"stats must be 'batch' or 'instance', got {self.stats!r}")
        if self.stats == "instance" and (self.warm_start or self.attack_every > 1):
            raise ValueError("stats='instance' gives each sample its own multipliers, which cannot carry over to the "
                             "next batch: drop warm_start / attack_every, or use stats='batch'")
        if self.attack_loss not in ("ce", "kl"):
            raise ValueError(f"attack_loss must be 'ce' or 'kl', got {self.attack_loss!r}")
        if self.layout not in ("auto", "nchw", "nhwc"):
            raise ValueError(f"layout must be 'auto', 'nchw' or 'nhwc', got {self.layout!r}")
        if self.capture not in ("check", "copy"):
            raise ValueError(f"capture must be 'check' or 'copy', got {self.capture!r}")


def init_signature() -> inspect.Signature:
    """``AdvBN.__init__``'s signature derived from the fields (for ``help()``, IDEs and docs): ``layer`` positional,
    every other option keyword-only."""
    hints = get_type_hints(AdvBNConfig)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in fields(AdvBNConfig):
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD if f.name == "layer" else inspect.Parameter.KEYWORD_ONLY
        params.append(inspect.Parameter(f.name, kind, default=f.default, annotation=hints[f.name]))
    return inspect.Signature(params, return_annotation=None)


def init_docstring() -> str:
    """The ``Args:`` section of ``AdvBN.__init__``, one line per field with its help text and default."""
    return "Args:\n" + "\n".join(f"    {f.name}: {f.metadata['help']} (default {f.default!r})."
                                   for f in fields(AdvBNConfig))
