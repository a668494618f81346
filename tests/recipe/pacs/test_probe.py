"""advbn_aug.recipe.pacs.probe: the floor of the PACS recipe, a multinomial logistic regression fitted on the frozen
pooled features of the pretrained backbone."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from advbn_aug.recipe.pacs.probe import logistic_regression, pooled_features


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three linearly separable 2-d clusters of 20 points: ``x (60, 2)``, ``y (60,)``."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0, 0.0], [-2.0, 3.5], [-2.0, -3.5]])
    y = torch.arange(3).repeat_interleave(20)
    return centres[y] + 0.5 * torch.randn(60, 2, generator=g), y


def _objective(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """The documented objective: mean cross-entropy + ``|w|^2 / (2 c n)``, the bias unpenalised."""
    return nn.functional.cross_entropy(x.double() @ w.T + b, y) + (w ** 2).sum() / (2 * c * len(y))


def test_logistic_regression_separates_a_separable_set_at_the_objective_minimum():
    x, y = _blobs()
    w, b = logistic_regression(x, y, 3)
    assert w.shape == (3, 2) and b.shape == (3,) and w.dtype == b.dtype == torch.float64
    assert torch.equal((x.double() @ w.T + b).argmax(1), y)
    w, b = w.requires_grad_(), b.requires_grad_()
    gw, gb = torch.autograd.grad(_objective(w, b, x, y, 1.0), (w, b))
    assert gw.abs().max() < 1e-5 and gb.abs().max() < 1e-5  # stationary, so the convex optimum


def test_logistic_regression_is_deterministic_and_c_sets_the_penalty():
    x, y = _blobs(1)
    w1, b1 = logistic_regression(x, y, 3)
    w2, b2 = logistic_regression(x, y, 3)
    assert torch.equal(w1, w2) and torch.equal(b1, b2)
    assert logistic_regression(x, y, 3, c=0.01)[0].norm() < 0.5 * w1.norm()  # a stronger penalty, smaller weights


def test_the_bias_is_not_penalised():
    """With uninformative (all-zero) features the weights do nothing and the bias alone fits the class
    frequencies: ``softmax(b)`` = (0.5, 0.3, 0.2); a penalised bias would be pulled toward uniform."""
    y = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    w, b = logistic_regression(torch.zeros(10, 4), y, 3)
    assert torch.equal(w, torch.zeros(3, 4))
    assert torch.allclose(b.softmax(0), torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), atol=1e-6)


class _Pooled(nn.Module):
    """A stand-in backbone with timm's interface: the features are the per-channel means of the normalised input
    (``(N, 3, H, W) -> (N, 3)``), then ``classifier``."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.classifier = nn.Linear(3, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = x.mean((2, 3))
        return pooled if pre_logits else self.classifier(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _colour_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 ``(8, 8, 3)`` images, noisy red, green or blue (the label): ``(n, 8, 8, 3)``, ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 60, (n, 8, 8, 3))
    x[np.arange(n), :, :, y] += 180
    return x.astype(np.uint8), y


def test_pooled_features_normalise_as_in_training_whatever_the_batch_size():
    images, _ = _colour_images(5)
    model = _Pooled().train()
    feats = pooled_features(model, images, batch_size=2, device=torch.device("cpu"))
    expected = ((images / 255.0 - 0.5) / 0.5).mean((1, 2))  # (x / 255 - 0.5) / 0.5, then the model's pooling
    assert feats.shape == (5, 3) and feats.dtype == torch.float64 and not model.training
    assert np.allclose(feats.numpy(), expected, atol=1e-6)
    assert torch.equal(feats, pooled_features(model, images, batch_size=5, device=torch.device("cpu")))


def test_fit_linear_head_replaces_the_classifier_with_the_fitted_probe(monkeypatch):
    import advbn_aug.recipe.pacs.probe as probe
    from advbn_aug.eval import predict
    from advbn_aug.recipe.pacs.config import PACS_TINY
    from advbn_aug.recipe.pacs.data import PACS_MEAN, PACS_STD

    torch.manual_seed(0)
    backbone = _Pooled()
    monkeypatch.setattr(probe, "load_pacs_model", lambda cfg: (backbone, []))
    x, y = _colour_images(12)
    model = probe.fit_linear_head(PACS_TINY, SimpleNamespace(train_x=x, train_y=y), torch.device("cpu"))
    assert model is backbone and not model.training
    feats = pooled_features(_Pooled(), x, 12, torch.device("cpu"))
    w, b = logistic_regression(feats, torch.from_numpy(y), 3)
    assert torch.equal(model.classifier.weight, w.float()) and torch.equal(model.classifier.bias, b.float())
    x_new, y_new = _colour_images(9, seed=1)  # unseen images of the same colours
    pred, _ = predict(model, x_new, batch_size=9, device="cpu", mean=PACS_MEAN, std=PACS_STD, amp=False)
    assert np.array_equal(pred, y_new)
