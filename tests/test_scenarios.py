"""End to end: a few training steps with AdvBN on the model families the README names, at small sizes.

Each model trains 2 SGD steps with ``clean CE + adversarial CE`` (random weights, batch 4) at a layer where AdvBN acts,
then again from the same seed with ``eps=0``; the adversarial loss must differ (the attack changes what the downstream
layers see) while the first clean loss is the same. ``steps=0`` for the ``eps=0`` run: with ``eps=0`` the box is the
single point ``(1, 1)``, so attack steps could change nothing (and the attack draws no random numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from advbn_aug import AdvBN

pytestmark = pytest.mark.slow


def _timm(name: str, **kw: Any) -> Callable[[], nn.Module]:
    return lambda: timm.create_model(name, pretrained=False, num_classes=4, **kw)


SCENARIOS = {  # id: (build, layer, AdvBN options, image size)
    "efficientnet_b0": (_timm("efficientnet_b0"), "blocks.2", {}, 32),
    "convnext_atto": (_timm("convnext_atto"), "stages.1", {}, 32),
    "vit_tiny": (_timm("vit_tiny_patch16_224", img_size=64), "blocks.5", {}, 64),
    "swin_tiny": (_timm("swin_tiny_patch4_window7_224", img_size=64, window_size=4), "layers.1", {"layout": "nhwc"},
                  64),
    # the block outputs feed a BatchNorm directly (AdvBN refuses them); after the transition's ReLU it acts
    "densenet121": (lambda: torchvision.models.densenet121(num_classes=4), "features.transition1.relu", {}, 32),
}


def _train(build: Callable[[], nn.Module], layer: str, options: dict, size: int, eps: float
           ) -> tuple[list[float], list[float], nn.Module, list[str]]:
    """Two steps from seed 0; returns the clean and adversarial losses per step, the detached model and the keys of
    the model as built."""
    torch.manual_seed(0)
    model = build()
    keys = list(model.state_dict())
    adv = AdvBN(layer, eps=eps, steps=2 if eps else 0, **options).attach(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    model.train()
    g = torch.Generator().manual_seed(1)
    clean, adversarial = [], []
    for _ in range(2):
        x, y = torch.randn(4, 3, size, size, generator=g), torch.randint(0, 4, (4,), generator=g)
        clean_loss = F.cross_entropy(model(x), y)
        adv_loss = adv.adversarial_loss(y)
        optimizer.zero_grad()
        (clean_loss + adv_loss).backward()
        optimizer.step()
        clean.append(clean_loss.item())
        adversarial.append(adv_loss.item())
    return clean, adversarial, adv.detach(), keys


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_advbn_trains_and_its_loss_responds_to_eps(scenario):
    build, layer, options, size = SCENARIOS[scenario]
    clean, adversarial, model, keys = _train(build, layer, options, size, eps=1.1)
    clean0, adversarial0, _, _ = _train(build, layer, options, size, eps=0.0)
    assert all(math.isfinite(v) for v in clean + adversarial)
    assert clean[0] == clean0[0], "same seed, same first clean forward"
    assert all(abs(a - b) > 1e-3 * max(1.0, abs(b)) for a, b in zip(adversarial, adversarial0)), \
        f"{scenario}: adversarial losses {adversarial} vs {adversarial0} at eps=0"
    assert list(model.state_dict()) == keys, "detach() gives the model's own state_dict keys back"
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 4)
