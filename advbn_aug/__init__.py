"""advbn_aug: adversarial feature-statistics augmentation (AdvBN) as a plugin for timm and torchvision models."""

__version__ = "0.1.0"
