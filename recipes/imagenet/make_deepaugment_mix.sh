#!/usr/bin/env bash
# Build the ImageFolder that the DeepAugment arms train on: ImageNet train + the DeepAugment copies (CAE, EDSR),
# as symlinks, sampled uniformly like Hendrycks et al. (ImageNet + both DeepAugment sets). Validation = ImageNet's.
#   DATA=/data/imagenet CAE=/data/deepaugment/CAE EDSR=/data/deepaugment/EDSR bash recipes/imagenet/make_deepaugment_mix.sh
# CAE/EDSR: the DeepAugment ImageNet copies (each <wnid>/*.JPEG), generated with the authors' scripts
# (github.com/hendrycks/imagenet-r, DeepAugment/) from ImageNet train.
set -euo pipefail
DATA=${DATA:?}; CAE=${CAE:?}; EDSR=${EDSR:?}
MIX=${MIX:-$DATA-deepaugment-mix}
mkdir -p "$MIX/train"
ln -sfn "$DATA/validation" "$MIX/validation"
for wnid_dir in "$DATA"/train/*/; do
  wnid=$(basename "$wnid_dir")
  mkdir -p "$MIX/train/$wnid"
  for src in "$DATA/train" "$CAE" "$EDSR"; do
    tag=$(basename "$src")
    for f in "$src/$wnid"/*; do ln -sf "$f" "$MIX/train/$wnid/${tag}_$(basename "$f")"; done
  done
done
echo "wrote $MIX"
