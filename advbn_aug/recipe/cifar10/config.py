"""Configuration of the CIFAR-10 recipe (``advbn-aug recipe cifar10``): the arms and the budget.

An *arm* is one fine-tuning method (which image-space and feature-space augmentations are on); a
:class:`RecipeConfig` fixes everything the arms share (model, trainable parameters, steps, batch, optimizer,
training subset, DeepAugment data, evaluation). Both round-trip through YAML (``recipes/cifar10/configs/``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from advbn_aug.recipe.core.config import ArmConfig, Overridable, check_shared
from advbn_aug.recipe.core.evidence import Comparisons

__all__ = ["RecipeConfig", "DEFAULT_ARMS", "ARM_ORDER", "HYPOTHESES", "FULL", "SHORT", "TINY", "GPU", "PRESETS",
           "GPU_WORKERS", "PREFIX", "prefix_names"]

# The top-level modules of the CIFAR ResNets, in forward order. Every arm freezes the same prefix: the stem and
# every stage up to and including the AdvBN layer (the paper's AdvBN prefix; with the default layer1 that is
# conv1, bn1, layer1), so all arms train the same parameters.
_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3")
PREFIX = ("conv1", "bn1", "layer1")


def prefix_names(layer: str) -> tuple[str, ...]:
    """The frozen top-level modules for an AdvBN ``layer`` of the CIFAR ResNets (a stage name)."""
    if layer not in _STAGES[2:]:
        raise ValueError(f"the recipe's advbn.layer must be one of the CIFAR ResNet stages {list(_STAGES[2:])}, got "
                         f"{layer!r} (the prefix frozen in every arm ends there)")
    return _STAGES[:_STAGES.index(layer) + 1]


DEFAULT_ARMS: dict[str, ArmConfig] = {a.name: a for a in (
    ArmConfig("pretrained", "the pretrained model, not fine-tuned (reference row, one seed)", train=False),
    ArmConfig("standard", "standard fine-tuning (cross-entropy, crop + flip)"),
    ArmConfig("advbn", "AdvBN fine-tuning (clean CE + adversarial CE, dual BN)", advbn=True),
    ArmConfig("augmix", "AugMix + JSD", augmix=True),
    ArmConfig("augmix_advbn", "AugMix + JSD + AdvBN", augmix=True, advbn=True),
    ArmConfig("mixstyle", "MixStyle (random mixing, p 0.5, alpha 0.1) after layer1 and layer2",
              features=[{"type": "mixstyle", "layer": "layer1"}, {"type": "mixstyle", "layer": "layer2"}]),
    ArmConfig("dsu", "DSU (p 0.5) after layer1, layer2 and layer3",
              features=[{"type": "dsu", "layer": f"layer{i}"} for i in (1, 2, 3)]),
    # stacks (issue 23). AdvBN comes first in the policy, so at layer1 its hook captures the layer's own output
    # and attacks that; DSU's hooks, registered after it, perturb the clean forward only (AdvBN's attack and
    # adversarial passes run the downstream layers without them). The attack therefore stays a deterministic worst
    # case over (m, s) of the true feature instead of chasing a fresh DSU draw at every PGD step, and the two
    # augmentations reach the downstream layers on separate paths: DSU on the clean one, AdvBN on the adversarial.
    ArmConfig("dsu_advbn", "AdvBN after layer1 + DSU (p 0.5) after layer1, layer2 and layer3", advbn=True,
              features=[{"type": "dsu", "layer": f"layer{i}"} for i in (1, 2, 3)]),
    ArmConfig("advbn_quarter", "AdvBN, 6 steps, adversarial term on the first quarter of each batch", advbn=True,
              advbn_options={"adv_fraction": 0.25}),
    ArmConfig("augmix_dsu", "AugMix + JSD + DSU (p 0.5) after layer1, layer2 and layer3", augmix=True,
              features=[{"type": "dsu", "layer": f"layer{i}"} for i in (1, 2, 3)]),
    ArmConfig("augmix_dsu_advbn", "AugMix + JSD + AdvBN after layer1 + DSU after layer1, layer2 and layer3",
              augmix=True, advbn=True, features=[{"type": "dsu", "layer": f"layer{i}"} for i in (1, 2, 3)]),
    ArmConfig("deepaugment_augmix", "DeepAugment data (CAE + EDSR copies) + AugMix + JSD", augmix=True,
              deepaugment=True),
    ArmConfig("deepaugment_augmix_advbn", "DeepAugment data + AugMix + JSD + AdvBN", augmix=True, deepaugment=True,
              advbn=True),
)}
ARM_ORDER = tuple(DEFAULT_ARMS)

# the comparisons of the table, hypothesis key -> (arm, its control, label); the first also bounds the clean cost
# (0.5 points)
HYPOTHESES: Comparisons = {
    "advbn_vs_standard": ("advbn", "standard", "AdvBN vs standard"),
    "augmix_advbn_vs_augmix": ("augmix_advbn", "augmix", "AugMix + AdvBN vs AugMix"),
    "augmix_vs_standard": ("augmix", "standard", "AugMix vs standard"),
    "mixstyle_vs_standard": ("mixstyle", "standard", "MixStyle vs standard"),
    "dsu_vs_standard": ("dsu", "standard", "DSU vs standard"),
    "advbn_vs_mixstyle": ("advbn", "mixstyle", "AdvBN vs MixStyle"),
    "advbn_vs_dsu": ("advbn", "dsu", "AdvBN vs DSU"),
    # the stacks (issue 23): does AdvBN add to DSU, DSU to AdvBN, AdvBN on a quarter of the batch, DSU to AugMix
    "dsu_advbn_vs_dsu": ("dsu_advbn", "dsu", "DSU + AdvBN vs DSU"),
    "dsu_advbn_vs_advbn": ("dsu_advbn", "advbn", "DSU + AdvBN vs AdvBN"),
    "advbn_quarter_vs_advbn": ("advbn_quarter", "advbn", "AdvBN on a quarter of the batch vs AdvBN"),
    "advbn_quarter_vs_standard": ("advbn_quarter", "standard", "AdvBN on a quarter of the batch vs standard"),
    "augmix_dsu_vs_augmix": ("augmix_dsu", "augmix", "AugMix + DSU vs AugMix"),
    "augmix_dsu_advbn_vs_augmix_dsu": ("augmix_dsu_advbn", "augmix_dsu", "AugMix + DSU + AdvBN vs AugMix + DSU"),
    "deepaugment_augmix_advbn_vs_deepaugment_augmix": ("deepaugment_augmix_advbn", "deepaugment_augmix",
                                                       "DeepAugment + AugMix + AdvBN vs DeepAugment + AugMix"),
}


@dataclass
class RecipeConfig(Overridable):
    """Everything the arms share. Fractions (``decay_at``) are of ``steps``. The training fields every benchmark has
    follow :class:`~advbn_aug.recipe.core.config.TrainConfig` (declared here again for this file's field order).

    Args:
        model: ``resnet20`` or ``resnet56`` (akamaster pretrained CIFAR ResNets).
        arms: arm names to run, in order.
        seeds: training seeds (each arm x seed is one run; ``pretrained`` runs once).
        steps, batch_size: optimizer steps per run and clean images per step (identical for every arm; AugMix adds
            two augmented views of each image).
        lr, momentum, weight_decay, decay_at, decay_rate: SGD; lr x ``decay_rate`` after ``decay_at * steps``.
        train_subset: class-balanced subset of the training split (fixed, seed-independent); ``None``: all.
        advbn: AdvBN settings (``AdvBNConfig`` keys); the paper's defaults after ``layer1``.
        augmix: AugMix settings (``AugMixConfig`` keys); ``jsd_weight``: the paper's 12.
        deepaugment: CAE/EDSR training (``epochs``, ``channels``, ``batch_size``, ``lr``) and generation
            (``strength``, ``group_size``) on the training subset.
        eval_images: test images corrupted for the CIFAR-10-C evaluation (fixed random subset of the JPEG test set).
        corruptions, severities: the corruption grid (``"all"``: the 19 CIFAR-10-C corruptions).
        clean_test_images: images of the JPEG test set for clean accuracy (``None``: all 10,000).
        lossless_images: images of ``test_lossless`` (``None``: all 1,000) for the JPEG-vs-lossless gap.
        checkpoint_interval: steps between resumable checkpoints.
        extras: evaluation modes added to each run (``recipe.cifar10.eval_modes``): ``adv_route`` (AdvBN arms through
            their adversarial BatchNorms), ``tta`` (test-time BatchNorm adaptation), ``stylized``
            (Stylized-CIFAR-10; needs ``pip install 'advbn-aug[stylized]'``), ``decoded`` (test images decoded from
            AdvBN-perturbed / AdaIN-swapped features at the AdvBN layer).
        tta_images, tta_modes, tta_momentum: the adaptation modes compared with no adaptation, on the first
            ``tta_images`` images of the corruption subset (all corruptions and severities).
        stylized: ``StylizedConfig`` keys (images, strengths, seed, style pool).
        stylized_sha256: the expected Stylized-CIFAR-10 set, sha256 of its images per strength (``{"0.5": hex}``;
            ``None``: unchecked). A set generated otherwise (another machine renders other pixels) is still
            evaluated, with a warning naming both hashes and ``matches_expected: false`` in its result; every
            result records its set's sha256, and the table compares Stylized numbers only within one set.
        decoded: the ``decoded`` mode's test sets (``advbn_aug.recipe.cifar10.decoded``): decoder ``epochs`` and
            ``train_images``, AdvBN ``eps`` and ``steps`` of the attack, ``images`` (of the 1,000 lossless ones).
    """

    benchmark: ClassVar[str] = "cifar10"

    model: str = "resnet20"
    arms: list[str] = field(default_factory=lambda: list(ARM_ORDER))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    steps: int = 782
    batch_size: int = 64
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_at: float = 0.5
    decay_rate: float = 0.1
    train_subset: int | None = None
    advbn: dict[str, Any] = field(default_factory=lambda: {"layer": "layer1", "eps": 1.1, "step_size": 0.2,
                                                           "steps": 6})
    augmix: dict[str, Any] = field(default_factory=dict)
    jsd_weight: float = 12.0
    deepaugment: dict[str, Any] = field(default_factory=lambda: {
        "nets": ["cae", "edsr"], "epochs": 5, "channels": 32, "batch_size": 128, "lr": 1e-3, "strength": 1.0,
        "group_size": 8})
    eval_images: int = 2000
    corruptions: str | list[str] = "all"
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    clean_test_images: int | None = None
    lossless_images: int | None = None
    eval_batch_size: int = 100
    checkpoint_interval: int = 25
    extras: list[str] = field(default_factory=lambda: ["adv_route", "tta", "stylized", "decoded"])
    tta_images: int = 250
    tta_modes: list[str] = field(default_factory=lambda: ["full", "online"])
    tta_momentum: float = 0.1
    stylized: dict[str, Any] = field(default_factory=lambda: {"images": 1000, "strengths": [0.5, 0.75, 1.0]})
    stylized_sha256: dict[str, str] | None = None
    decoded: dict[str, Any] = field(default_factory=lambda: {"epochs": 5, "train_images": 6000, "eps": 1.1,
                                                             "steps": 6, "images": 1000})

    def __post_init__(self) -> None:
        if self.model not in ("resnet20", "resnet56"):
            raise ValueError(f"model must be resnet20 or resnet56 (the pretrained CIFAR ResNets), got {self.model!r}")
        check_shared(self, ("steps", "batch_size", "eval_images", "eval_batch_size", "checkpoint_interval"),
                     ("train_subset", "clean_test_images", "lossless_images"))
        prefix_names(self.advbn.get("layer", "layer1"))
        known = ("adv_route", "tta", "stylized", "decoded")
        bad = [e for e in self.extras if e not in known]
        if bad:
            raise ValueError(f"unknown evaluation mode(s) {bad} in extras: choose from {list(known)}")
        if not isinstance(self.tta_images, int) or self.tta_images < 1:
            raise ValueError(f"tta_images must be an integer >= 1, got {self.tta_images!r}")
        bad = [m for m in self.tta_modes if m not in ("none", "full", "online")]
        if bad:
            raise ValueError(f"unknown tta_modes {bad}: choose from ['full', 'online']")
        if not 0 < self.tta_momentum <= 1:
            raise ValueError(f"tta_momentum must be in (0, 1], got {self.tta_momentum}")
        if "stylized" in self.extras:
            from advbn_aug.eval.stylized import StylizedConfig

            StylizedConfig.from_dict(dict(self.stylized))  # bad keys/values fail here, not after training
        if self.stylized_sha256 is not None:
            self.stylized_sha256 = _check_pin(self.stylized_sha256)
        self.seeds = [int(s) for s in self.seeds]
        self.severities = [int(s) for s in self.severities]

    def train_key(self) -> dict[str, Any]:
        """The fields that change a trained model (a finished run is reused only if they match)."""
        keys = ("model", "steps", "batch_size", "lr", "momentum", "weight_decay", "decay_at", "decay_rate",
                "train_subset", "advbn", "augmix", "jsd_weight", "deepaugment")
        return {k: getattr(self, k) for k in keys}

    def eval_key(self) -> dict[str, Any]:
        keys = ("eval_images", "corruptions", "severities", "clean_test_images", "lossless_images")
        return {k: getattr(self, k) for k in keys}


def _check_pin(pin: dict[Any, Any]) -> dict[str, str]:
    """``stylized_sha256`` with strength keys as in results (``"0.5"``, ``"1"``; YAML may read them as numbers)."""
    out = {}
    for k, v in dict(pin).items():
        if not isinstance(v, str) or len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError(f"stylized_sha256[{k!r}] must be a sha256 (64 lowercase hex digits), got {v!r}")
        out[f"{float(k):g}"] = v
    return out


# the paper's fine-tuning settings (lr 0.001, x0.1 at half, momentum 0.9, wd 1e-4) over one pass of the 50,000
# training images (782 x 64), 5 seeds. The DeepAugment pair is left out: its CAE / EDSR networks are trained here on
# CPU on CIFAR-10 (the paper's pretrained ones are not reachable), so it is not the paper's DeepAugment; run it with
# ``--arms deepaugment_augmix deepaugment_augmix_advbn`` (recipes/cifar10/README.md)
# Its Stylized-CIFAR-10 set is pinned to the one generated on 2026-12-07; the committed runs evaluated before sets were
# recorded saw an earlier one, which differs (the table compares within one set: recipe.cifar10.stylized_sets)
FULL = RecipeConfig(arms=[a for a in ARM_ORDER if not a.startswith("deepaugment")], stylized_sha256={
    "0.5": "b61d0a5612eb4460e323d3041bc227e5f2dd0d41a1c12a3988a7dc8dcf44a8e6",
    "0.75": "65b9174a92d925e732b1da4fe64c088e026a447d5bcf25f62eef1a870f905a9b",
    "1": "6dbdf5ef3019936d69a66f6dcd520b0ba3715197b192846bdc00b632ebf6256c"})
# the first tables' CPU-sized setting, kept for comparison: lr 0.01, 100 steps from a 5,000-image subset, 3 seeds,
# no extra evaluation modes (its first runs were made before they existed)
SHORT = RecipeConfig(arms=["pretrained", "standard", "advbn", "augmix", "augmix_advbn", "mixstyle", "dsu",
                           "deepaugment_augmix", "deepaugment_augmix_advbn"],
                     seeds=[0, 1, 2], steps=100, lr=0.01, train_subset=5000, extras=[])
TINY = RecipeConfig(
    seeds=[0, 1], steps=3, batch_size=16, train_subset=96, checkpoint_interval=2,
    deepaugment={"nets": ["cae", "edsr"], "epochs": 1, "channels": 8, "batch_size": 32, "lr": 1e-3,
                 "strength": 1.0, "group_size": 8},
    eval_images=100, corruptions=["gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"],
    severities=[1, 5], clean_test_images=500, lossless_images=200, eval_batch_size=100,
    tta_images=20, stylized={"images": 20, "strengths": [0.5, 1.0]},
    decoded={"epochs": 1, "train_images": 128, "eps": 1.1, "steps": 2, "images": 50},
)

# the recipe table on one GPU (``--preset gpu``, recipes/cifar10/README.md): FULL's training and evaluation settings
# (the same train and eval keys, so the same recipe and the same test sets) for the main arms, 10 seeds, no extra
# evaluation modes; run by GPU_WORKERS processes sharing the GPU and one runs folder. Its table has folders of its own
# (recipes/cifar10/results_gpu, runs/cifar10-gpu) and is never mixed with the CPU table.
GPU = RecipeConfig(arms=["standard", "advbn", "augmix", "augmix_advbn", "dsu", "mixstyle"], seeds=list(range(10)),
                   extras=[])
GPU_WORKERS = 8


PRESETS: dict[str, RecipeConfig] = {"full": FULL, "short": SHORT, "tiny": TINY, "gpu": GPU}


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(RecipeConfig)]
