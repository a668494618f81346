"""The PACS recipe's floor (arm ``pretrained``): the ImageNet-pretrained EfficientNet-Lite0 without fine-tuning.

Its ImageNet head cannot be read as a PACS classifier (ImageNet-1k has no giraffe, house or person class), so the
backbone stays as loaded and only a linear head is fitted on its frozen pooled features (1280-d, after the last
stage and global pooling) of the training images, without augmentation: a multinomial logistic regression with the
L2 penalty of scikit-learn's default (``C = 1``: mean cross-entropy + ``|W|^2 / (2 n)``, the bias unpenalised), solved
by L-BFGS in float64 from zero, so it is deterministic and has no setting chosen on test or crossval data.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from advbn_aug.recipe.pacs.config import PACSConfig
from advbn_aug.recipe.pacs.data import PACS_MEAN, PACS_STD, load_pacs_model

__all__ = ["fit_linear_head", "pooled_features", "logistic_regression"]

log = logging.getLogger("advbn_aug.recipe")  # one logger for the whole recipe (run logs attach to it)


@torch.no_grad()
def pooled_features(model: nn.Module, images: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor:
    """``(n, num_features)`` float64 CPU features of uint8 NHWC ``images`` (the model in eval mode, normalised as in
    training: ``(x / 255 - 0.5) / 0.5``)."""
    model.eval()
    mean = torch.tensor(PACS_MEAN, device=device).view(1, -1, 1, 1)
    std = torch.tensor(PACS_STD, device=device).view(1, -1, 1, 1)
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).to(device).permute(0, 3, 1, 2).float().div_(255.0)
        feats = model.forward_head(model.forward_features((x - mean) / std), pre_logits=True)
        out.append(feats.double().cpu())
    return torch.cat(out)


def logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float = 1.0,
                        max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on ``x`` ``(n, d)`` and labels ``y`` ``(n,)``: ``(weight (k, d), bias (k,))``
    minimising mean cross-entropy + ``|weight|^2 / (2 c n)`` (L-BFGS from zero, float64)."""
    n, d = x.shape
    x = x.double()
    w = torch.zeros(num_classes, d + 1, dtype=torch.float64, requires_grad=True)
    xb = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(xb @ w.T, y) + (w[:, :-1] ** 2).sum() / (2 * c * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w = w.detach()
    return w[:, :-1].clone(), w[:, -1].clone()


def fit_linear_head(cfg: PACSConfig, data, device: torch.device) -> nn.Module:
    """The pretrained model with its classifier replaced by a linear head fitted on the frozen features of
    ``data.train_x`` (see the module docstring); on CPU, in eval mode."""
    model, _ = load_pacs_model(cfg)
    model.to(device)
    feats = pooled_features(model, data.train_x, cfg.eval_batch_size, device)
    y = torch.from_numpy(np.asarray(data.train_y, dtype=np.int64))
    weight, bias = logistic_regression(feats, y, model.classifier.out_features)
    train_acc = float(((feats @ weight.T + bias).argmax(1) == y).double().mean())
    log.info("pretrained: linear head fitted on %d frozen feature vectors (%d-d); training accuracy %.1f%%",
             len(y), feats.shape[1], 100 * train_acc)
    with torch.no_grad():
        model.classifier.weight.copy_(weight.to(model.classifier.weight))
        model.classifier.bias.copy_(bias.to(model.classifier.bias))
    return model.cpu().eval()
