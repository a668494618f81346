"""feature.capture: the attacked layer's output as AdvBN caches it: an in-place op after the layer is detected
(capture='check'), capture='copy' keeps the true output, discard drops it, and the default capture under
torch.compile."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from advbn_aug import attach

from .._models import tv_resnet18 as _tv_resnet18


def _real_output(model, layer, x):
    """The layer's true output in a train-mode forward with an eval-mode prefix, cloned before anything else runs."""
    got = {}

    def keep(module, inputs, output):
        got.setdefault("f", output.detach().clone())  # returns None: the model's output stays its own

    h = model.get_submodule(layer).register_forward_hook(keep)
    model(x)
    h.remove()
    return got["f"]


@pytest.mark.parametrize("layer", ["bn1", "layer1.0.bn2"])  # ReLU(inplace=True) / `out += identity` follow
def test_in_place_op_after_the_layer_is_detected(layer):
    model = _tv_resnet18()
    adv = attach(model, layer, split="fx" if layer == "bn1" else "hook")  # the block's suffix reads its input
    model.train()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    model(x)
    with pytest.raises(RuntimeError, match=rf"layer '{layer}' was modified in place.*capture='copy'"):
        adv.adversarial_loss(y)


@pytest.mark.parametrize("layer", ["bn1", "layer1.0.bn2"])
def test_capture_copy_attacks_the_true_layer_output(layer):
    model = _tv_resnet18()
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    adv = attach(model, layer, capture="copy", split="fx" if layer == "bn1" else "hook")
    model.train()
    ref_model = _tv_resnet18()
    ref_model.train()
    for m in [ref_model.conv1, ref_model.bn1, ref_model.layer1]:
        m.eval()  # the frozen prefix (bn1 / layer1.0.bn2 lie in it)
    ref = _real_output(ref_model, layer, x)
    model(x)
    f = adv.cached_feature
    assert (ref < 0).any(), "the true output is signed (pre-ReLU)"
    torch.testing.assert_close(f, ref)
    loss = adv.adversarial_loss(y)
    assert torch.isfinite(loss)


def test_block_outputs_are_not_modified_in_place():
    """The paper's layer: no in-place op touches it, so the default (by reference) costs nothing extra."""
    model = _tv_resnet18()
    adv = attach(model, "layer1")
    model.train()
    y = torch.randint(0, 10, (4,))
    model(torch.randn(4, 3, 32, 32))
    assert torch.isfinite(adv.adversarial_loss(y))


def test_discard_drops_the_cached_feature():
    model = _tv_resnet18()
    adv = attach(model, "layer1")
    model.train()
    model(torch.randn(2, 3, 32, 32))
    adv.discard()
    with pytest.raises(RuntimeError, match="no cached feature"):
        adv.adversarial_loss(torch.zeros(2, dtype=torch.long))


class _InPlaceBlockNet(nn.Module):
    """A torchvision BasicBlock as the layer: its output is modified in place inside the block (`out += identity`,
    ReLU(inplace=True)), so the traced tensor's version counter differs from the eager output's."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.layer1 = torchvision.models.resnet.BasicBlock(4, 4)
        self.head = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.layer1(self.stem(x)))


def _compiler_missing() -> str | None:
    """Why torch.compile's default (inductor) backend cannot run here, or None."""
    import shutil

    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "no C++ compiler for inductor's CPU kernels"
    return None


@pytest.mark.slow  # compiling takes tens of seconds on a CPU
def test_compiled_model_trains_with_the_default_capture():
    """Attach, then torch.compile (README); the default capture='check' trains and matches the eager model."""
    if (why := _compiler_missing()) is not None:
        pytest.skip(why)
    torch.manual_seed(0)
    model = _InPlaceBlockNet()
    eager = copy.deepcopy(model)
    adv, adv_eager = attach(model, "layer1"), attach(eager, "layer1")
    assert adv.config.capture == "check"
    compiled = torch.compile(model)
    opts = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1) for m in (model, eager)]
    model.train()
    eager.train()
    g = torch.Generator().manual_seed(0)
    for step in range(2):
        x, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)
        losses = []
        for a, net, opt in ((adv, compiled, opts[0]), (adv_eager, eager, opts[1])):
            loss = a.loss(x, y, model=net)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5, msg=f"step {step}")
    torch.testing.assert_close(adv.last_multipliers[0], adv_eager.last_multipliers[0])
    state = {k: v.clone() for k, v in model.state_dict().items()}  # a refused batch is rolled back, compiled too
    x[0] = float("nan")
    with pytest.raises(FloatingPointError, match="contains NaN or Inf"):
        adv.loss(x, y, model=compiled)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
