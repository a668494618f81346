"""advbn_aug: adversarial feature-statistics augmentation (AdvBN) as a plugin for timm and torchvision models.

Core: :class:`AdvBN` / :func:`attach` (feature-space; :func:`attack_stats` is its functional core;
:func:`strip_advbn` makes plain models of copies such as an EMA), :class:`Policy`
(stacks image-space stages such as :class:`AugMix` and :class:`DeepAugment` with feature-space augmenters),
:func:`evaluate_corruptions` (CIFAR-10-C / ImageNet-C style robustness evaluation).
"""

from advbn_aug._extras import lazy_getattr
from advbn_aug.config import DictConfig
from advbn_aug.datasets.cifar10 import load_cifar10, shared_data_dir
from advbn_aug.datasets.pacs import (
    PACS_CLASSES,
    PACS_DOMAINS,
    PACSDomain,
    load_pacs,
    pacs_leave_one_out,
    pacs_single_source,
)
from advbn_aug.feature.advbn import AdvBN, attach
from advbn_aug.feature.attack import AttackResult, attack_stats, run_attack
from advbn_aug.feature.base import StatsAugmenter
from advbn_aug.feature.bn_fold import fold_conv_bn
from advbn_aug.feature.config import AdvBNConfig
from advbn_aug.feature.dsu import DSU, DSUConfig
from advbn_aug.feature.dual_norm import DualNorm, convert_dual_norm, fold_dual_norm, routed, select_bn_state
from advbn_aug.feature.mixstyle import MixStyle, MixStyleConfig
from advbn_aug.feature.stats import FeatureStats, feature_stats, perturb_stats
from advbn_aug.feature.strip import strip_advbn
from advbn_aug.feature.survey import LayerCandidate, format_layer_table, suggest_layers
from advbn_aug.image import (
    AlbumentationsStage,
    AugMix,
    AugMixBatch,
    AugMixConfig,
    AugMixViews,
    DeepAugment,
    KorniaStage,
    train_deepaugment_net,
)
from advbn_aug.losses import augmix_criterion, jsd_consistency, prediction_kl
from advbn_aug.models.cifar_resnet import CifarResNet, cifar_resnet, load_pretrained_cifar_resnet
from advbn_aug.models.efficientnet_lite import load_efficientnet_lite
from advbn_aug.policy import FeatureAugmenter, Policy, PolicyConfig, Schedule
from advbn_aug.split import ModelSplit, resolve_layer, split_model

# Robustness evaluation and the feature visualiser need the [eval] extra (OpenCV, SciPy, matplotlib): their names are
# imported on first use, so `import advbn_aug` and the core API work without it (advbn_aug._extras)
_EVAL_NAMES = ("ALEXNET_ERRORS", "BENCHMARK_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "Baseline", "EvalConfig",
               "EvalResult", "ImageNetCFolder", "corrupt", "evaluate_corruptions", "load_baseline", "load_cifar10c",
               "summarize", "write_report")
_VISUALISE_NAMES = ("DecoderConfig", "FeatureDecoder", "FeatureInverter", "GridConfig", "TestsetConfig", "make_grid",
                    "make_testset", "train_decoder")
__getattr__ = lazy_getattr(__name__, {"eval": ".eval", "visualise": ".visualise",
                                      **dict.fromkeys(_EVAL_NAMES, ".eval"),
                                      **dict.fromkeys(_VISUALISE_NAMES, ".visualise")})


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "AdvBN", "AdvBNConfig", "attach", "strip_advbn", "attack_stats", "run_attack", "AttackResult",
    "CifarResNet", "cifar_resnet", "load_pretrained_cifar_resnet",
    "DictConfig",
    "load_cifar10", "shared_data_dir",
    "DualNorm", "convert_dual_norm", "fold_dual_norm", "routed", "select_bn_state",
    "ALEXNET_ERRORS", "BENCHMARK_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "Baseline", "EvalConfig",
    "EvalResult", "ImageNetCFolder", "corrupt", "evaluate_corruptions", "load_baseline", "load_cifar10c",
    "summarize", "write_report",
    "AlbumentationsStage", "AugMix", "AugMixBatch", "AugMixConfig", "AugMixViews", "DeepAugment", "KorniaStage",
    "train_deepaugment_net",
    "augmix_criterion", "jsd_consistency", "prediction_kl",
    "PACS_CLASSES", "PACS_DOMAINS", "PACSDomain", "load_pacs", "pacs_leave_one_out", "pacs_single_source",
    "load_efficientnet_lite", "fold_conv_bn",
    "LayerCandidate", "format_layer_table", "suggest_layers",
    "StatsAugmenter", "MixStyle", "MixStyleConfig", "DSU", "DSUConfig",
    "FeatureAugmenter", "Policy", "PolicyConfig", "Schedule",
    "ModelSplit", "resolve_layer", "split_model",
    "FeatureStats", "feature_stats", "perturb_stats",
    "DecoderConfig", "FeatureDecoder", "FeatureInverter", "GridConfig", "TestsetConfig", "make_grid", "make_testset",
    "train_decoder",
]
