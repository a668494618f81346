"""suggest_layers / format_layer_table and the ``advbn-aug layers`` command, on small models at 32-64 px."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.nn.modules import module as module_globals

from advbn_aug.feature.survey import LayerCandidate, format_layer_table, suggest_layers


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so every split is the hook split."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stage1 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.stem(x))
        if x.mean() > 0:  # a Python branch on a tensor value
            x = x * 2
        return self.head(self.stage2(x).mean((2, 3)))


def _hooks_left(model: nn.Module) -> list[str]:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    left = [f"{name or 'model'}.{k}" for name, m in model.named_modules() for k in kinds if getattr(m, k)]
    glob = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")
    return left + [k for k in glob if getattr(module_globals, k)]


def test_timm_resnet18_stages():
    model = timm.create_model("resnet18", pretrained=False)
    cands = suggest_layers(model, img_size=64)
    assert [c.name for c in cands] == ["layer1", "layer2", "layer3", "layer4"]  # the stem (act1, index 0) skipped
    assert [c.feature_info_index for c in cands] == [1, 2, 3, 4]
    assert [c.shape for c in cands] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    assert all(c.layout == "spatial" and c.nonneg and c.path == "fx" and not c.inert for c in cands)
    fractions = [c.suffix_flops_fraction for c in cands]
    assert all(0 < f < 1 for f in fractions) and fractions == sorted(fractions, reverse=True)
    assert len(set(fractions)) == 4
    with pytest.raises(AttributeError):  # frozen
        cands[0].name = "x"  # type: ignore[misc]


def test_torchvision_mobilenet_tree_and_signed_layers():
    model = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=10)
    cands = suggest_layers(model, img_size=64)
    names = [c.name for c in cands]
    assert names == [f"features.{k}" for k in range(1, 13)]  # features.0 (stem) and the classifier skipped
    assert all(c.feature_info_index is None and c.layout == "spatial" and c.path == "fx" for c in cands)
    assert not cands[1].nonneg  # an inverted residual block ends in a linear bottleneck: signed
    assert cands[1].shape == (2, 24, 8, 8)


def test_densenet_block_and_transition_outputs_are_marked_inert():
    model = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2,
                                        num_classes=3)  # densenet121's layout, tiny
    cands = {c.name: c for c in suggest_layers(model, img_size=32)}
    assert list(cands) == ["features.denseblock1", "features.transition1", "features.denseblock2"]
    assert all(not c.nonneg and c.path == "fx" for c in cands.values())
    assert cands["features.denseblock1"].inert.startswith("its output goes only into BatchNorm "
                                                         "'features.transition1.norm'")
    assert "e.g. AdvBN('features.transition1.relu')" in cands["features.denseblock1"].inert
    assert "'features.denseblock2.denselayer1.norm1'" in cands["features.transition1"].inert
    assert "'features.norm5'" in cands["features.denseblock2"].inert


def test_timm_vit_tokens():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=3, num_classes=10)
    cands = suggest_layers(model)  # input size from the model's patch_embed (64), not pretrained_cfg (224)
    assert [c.name for c in cands] == ["blocks.0", "blocks.1", "blocks.2"]
    assert [c.feature_info_index for c in cands] == [0, 1, 2]
    assert all(c.layout == "tokens" and c.shape == (2, 17, 192) and not c.nonneg and not c.inert for c in cands)
    fractions = [c.suffix_flops_fraction for c in cands]
    assert fractions == sorted(fractions, reverse=True) and fractions[0] > 0.5  # attention flops counted on CPU


def test_timm_swin_channels_last():
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64, window_size=4,
                              depths=(1, 1), num_heads=(1, 2), embed_dim=16, num_classes=10)
    cands = suggest_layers(model)
    assert [(c.name, c.shape, c.layout) for c in cands] == [
        ("layers.0", (2, 16, 16, 16), "channels_last"), ("layers.1", (2, 8, 8, 32), "channels_last")]


def test_untraceable_model_uses_hook_split():
    cands = suggest_layers(Branchy(), img_size=32)
    assert [c.name for c in cands] == ["stage1", "stage2"]
    assert [c.path for c in cands] == ["hook", "hook"]
    assert all("torch.fx could not trace" in c.reason for c in cands)
    assert [c.nonneg for c in cands] == [True, False]  # ReLU output vs BatchNorm output
    assert [c.shape for c in cands] == [(2, 8, 32, 32), (2, 16, 16, 16)]


def test_example_inputs():
    model = timm.create_model("resnet18", pretrained=False, num_classes=10)
    cands = suggest_layers(model, torch.randn(1, 3, 32, 48))
    assert cands[0].shape == (1, 64, 8, 12) and cands[-1].shape == (1, 512, 1, 2)


@pytest.mark.parametrize("make", [lambda: timm.create_model("resnet18", pretrained=False, num_classes=10), Branchy],
                         ids=["timm_resnet18", "branchy"])
def test_model_left_unchanged(make):
    torch.manual_seed(0)
    model = make()
    model.train()
    x = torch.randn(2, 3, 32, 32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    classes = [(n, type(m)) for n, m in model.named_modules()]
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    with torch.no_grad():
        before = model.eval()(x)
    model.train()
    rng = torch.get_rng_state()

    assert suggest_layers(model, img_size=32)

    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == flags
    assert [p.requires_grad for p in model.parameters()] == grads
    assert [(n, type(m)) for n, m in model.named_modules()] == classes
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())
    assert _hooks_left(model) == []
    assert all("forward" not in m.__dict__ for m in model.modules())  # the hook split's substitution is gone
    with torch.no_grad():
        assert torch.equal(model.eval()(x), before)


def test_format_layer_table():
    cands = [LayerCandidate("layer1", 1, (2, 64, 16, 16), "spatial", True, 0.681, "fx", "traced by torch.fx"),
             LayerCandidate("blocks.10", None, (2, 17, 192), "tokens", False, 0.0, "hook", "x" * 100),
             LayerCandidate("stages.0", 0, (2, 8, 4, 4), "spatial", False, 0.5, "fx", "traced", "its output ...")]
    lines = format_layer_table(cands, reason_width=20).splitlines()
    assert len(lines) == 5 and len({len(line) for line in lines}) == 1  # header, rule, one row each; aligned
    assert lines[0].startswith("| layer ") and set(lines[1]) <= {"|", "-"}
    assert [c.strip() for c in lines[0].split("|")[5:7]] == ["nonneg", "inert"]
    assert "| layer1    | 1 " in lines[2] and "2x64x16x16" in lines[2] and "68.1%" in lines[2] and "| yes " in lines[2]
    assert "| -  " in lines[3] and "| no " in lines[3] and "x" * 17 + "..." in lines[3]
    assert [[c.strip() for c in line.split("|")[5:7]] for line in lines[2:]] == [
        ["yes", "no"], ["no", "no"], ["no", "yes"]]
