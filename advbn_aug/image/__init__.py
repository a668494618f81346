"""Image-space augmentation: AugMix (dataset and batched tensor paths), DeepAugment, kornia/albumentations stages."""

from advbn_aug.image.augmix import AUGMIX_ALL_OPS, AUGMIX_OPS, AugMix, AugMixBatch, AugMixConfig, AugMixViews
from advbn_aug.image.deepaugment import DeepAugment, images_to_tensor, train_deepaugment_net
from advbn_aug.image.deepaugment_nets import (
    CAE,
    EDSR,
    build_deepaugment_net,
    load_deepaugment_net,
    save_deepaugment_net,
)
from advbn_aug.image.stages import (
    AlbumentationsStage,
    FnStage,
    KorniaStage,
    RandomApply,
    as_stage,
    build_stage,
    register_stage,
)

__all__ = [
    "AUGMIX_OPS", "AUGMIX_ALL_OPS", "AugMix", "AugMixBatch", "AugMixConfig", "AugMixViews",
    "DeepAugment", "train_deepaugment_net", "images_to_tensor",
    "CAE", "EDSR", "build_deepaugment_net", "load_deepaugment_net", "save_deepaugment_net",
    "AlbumentationsStage", "FnStage", "KorniaStage", "RandomApply", "as_stage", "build_stage", "register_stage",
]
