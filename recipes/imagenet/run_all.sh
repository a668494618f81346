#!/usr/bin/env bash
# The paper's ImageNet recipe (Shu et al., NeurIPS 2021) and its AugMix / DeepAugment combinations, with the
# self-contained timm trainer (integrations/timm/trainer.py). Run from the repository root. Needs ImageNet as an
# ImageFolder ($DATA/train/<wnid>/*.JPEG, $DATA/validation/<wnid>/*.JPEG) and GPUs.
#
#   DATA=/data/imagenet OUT=runs/imagenet NGPU=8 bash recipes/imagenet/run_all.sh [arm ...]
#
# Arms: advbn augmix_ft augmix_advbn deepaugment_augmix_ft deepaugment_augmix_advbn standard_ft (default: all).
# Every arm: 20 epochs, SGD lr 0.001 momentum 0.9 wd 1e-4, lr x0.1 after 10 epochs, global batch 256, crop 224,
# plain cross-entropy (no label smoothing), prefix up to layer1 frozen. Then evaluate on ImageNet-C (see README.md).
set -euo pipefail
DATA=${DATA:?set DATA to the ImageNet ImageFolder root}
OUT=${OUT:-runs/imagenet}
NGPU=${NGPU:-8}
BATCH=$((256 / NGPU))                      # per-process batch; 256 images per step in total
DA_CKPT=${DA_CKPT:-checkpoints/deepaugment_and_augmix.pth.tar}   # Hendrycks et al.'s released DeepAugment+AugMix ResNet-50
ARMS=("$@")
[ ${#ARMS[@]} -eq 0 ] && ARMS=(advbn augmix_ft augmix_advbn deepaugment_augmix_ft deepaugment_augmix_advbn standard_ft)

launch() { torchrun --nproc_per_node "$NGPU" -m advbn_aug.integrations.timm.trainer "$@"; }

# the paper's schedule and optimiser, shared by every arm (timm flag names)
COMMON=(--data-dir "$DATA" --model resnet50.tv_in1k --epochs 20 --opt sgd --lr 0.001 --momentum 0.9 --weight-decay 1e-4
        --sched step --decay-epochs 10 --decay-rate 0.1 --warmup-epochs 0 --smoothing 0 -b "$BATCH" --amp
        --channels-last -j 8 --output "$OUT" --checkpoint-hist 1)
ADVBN=(--advbn-layer layer1 --advbn-eps 1.1 --advbn-steps 6 --advbn-step-size 0.2)   # the paper's defaults
AUGMIX=(--aug-splits 3 --jsd-loss --aa augmix-m3-w3)                                   # clean + 2 AugMix views, JSD

# controls keep AdvBN attached with weight 0: the same frozen prefix (stem + layer1), no adversarial pass
CONTROL=(--advbn-layer layer1 --advbn-weight 0)

for arm in "${ARMS[@]}"; do
  case "$arm" in
    standard_ft)   # control: the torchvision ResNet-50 (76.1%) fine-tuned with the same budget, no AdvBN
      launch "${COMMON[@]}" --pretrained --experiment standard_ft "${CONTROL[@]}" ;;
    advbn)         # the paper's main result: torchvision ResNet-50 + AdvBN after layer1
      launch "${COMMON[@]}" --pretrained --experiment advbn "${ADVBN[@]}" ;;
    augmix_ft)     # control: the AugMix-trained ResNet-50 (timm resnet50.am_in1k) fine-tuned with AugMix + JSD
      launch "${COMMON[@]}" --model resnet50.am_in1k --pretrained --experiment augmix_ft "${AUGMIX[@]}" "${CONTROL[@]}" ;;
    augmix_advbn)  # AugMix + AdvBN: the same start and AugMix/JSD, plus AdvBN (the adversarial term covers all splits)
      launch "${COMMON[@]}" --model resnet50.am_in1k --pretrained --experiment augmix_advbn "${AUGMIX[@]}" "${ADVBN[@]}" ;;
    deepaugment_augmix_ft)   # control: DeepAugment+AugMix ResNet-50 fine-tuned on ImageNet + DeepAugment data, AugMix
      launch "${COMMON[@]}" --data-dir "$DATA-deepaugment-mix" --initial-checkpoint "$DA_CKPT" \
        --experiment deepaugment_augmix_ft "${AUGMIX[@]}" "${CONTROL[@]}" ;;
    deepaugment_augmix_advbn)
      launch "${COMMON[@]}" --data-dir "$DATA-deepaugment-mix" --initial-checkpoint "$DA_CKPT" \
        --experiment deepaugment_augmix_advbn "${AUGMIX[@]}" "${ADVBN[@]}" ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
done
