"""advbn_aug: adversarial feature-statistics augmentation (AdvBN) as a plugin for timm and torchvision models."""

from .advbn import AdvBN, AdvBNConfig, attach
from .cifar_resnet import CifarResNet, cifar_resnet, load_pretrained_cifar_resnet
from .config import DictConfig
from .data import load_cifar10, shared_data_dir
from .dual_norm import DualNorm, convert_dual_norm, fold_dual_norm, routed
from .split import ModelSplit, resolve_layer, split_model
from .stats import FeatureStats, feature_stats, perturb_stats

__version__ = "0.1.0"

__all__ = [
    "AdvBN", "AdvBNConfig", "attach",
    "CifarResNet", "cifar_resnet", "load_pretrained_cifar_resnet",
    "DictConfig",
    "load_cifar10", "shared_data_dir",
    "DualNorm", "convert_dual_norm", "fold_dual_norm", "routed",
    "ModelSplit", "resolve_layer", "split_model",
    "FeatureStats", "feature_stats", "perturb_stats",
]
