import pytest
import timm
import torch
import torchvision
from torch import nn

from advbn_aug.split import layer_candidates, resolve_layer, split_model


def test_resolve_by_name_and_feature_info_index():
    model = timm.create_model("resnet18")
    assert resolve_layer(model, "layer2") == "layer2"
    assert resolve_layer(model, 1) == "layer1"
    assert resolve_layer(model, "1") == "layer1"
    assert resolve_layer(model, -1) == "layer4"
    assert layer_candidates(model)[:5] == ["act1", "layer1", "layer2", "layer3", "layer4"]


def test_unknown_layer_message_lists_candidates():
    model = torchvision.models.resnet18()
    with pytest.raises(ValueError, match=r"layer 'layer9' is not a module of ResNet.*layer1"):
        resolve_layer(model, "layer9")


@pytest.mark.parametrize("build, layer, size", [
    (lambda: torchvision.models.resnet18(num_classes=4), "layer1", 32),
    (lambda: timm.create_model("resnet18", num_classes=4, drop_rate=0.2), "layer2", 32),
    (lambda: timm.create_model("convnext_atto", num_classes=4), "stages.0", 32),
    (lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, num_classes=4),
     "blocks.0", 32),
    (lambda: torchvision.models.mobilenet_v3_small(num_classes=4), "features.2", 32),
])
@pytest.mark.parametrize("mode", ["fx", "hook"])
def test_suffix_reproduces_the_model(build, layer, size, mode):
    torch.manual_seed(0)
    model = build().eval()
    split = split_model(model, layer, mode)
    assert split.mode == mode
    x = torch.randn(2, 3, size, size)
    cache = {}
    h = split.layer_module.register_forward_hook(lambda m, i, o: cache.setdefault("f", o))
    with torch.no_grad():
        ref = model(x)
    h.remove()
    with torch.no_grad():
        out = split.run_suffix(cache["f"], train=False, inputs=((x,), {}))
    torch.testing.assert_close(out, ref)
    # substituting a different feature changes the output
    with torch.no_grad():
        out2 = split.run_suffix(cache["f"] + torch.randn_like(cache["f"]), train=False, inputs=((x,), {}))
    assert not torch.allclose(out2, ref)
    assert split.layer_module in split.prefix_modules
    assert not set(map(id, split.prefix_modules)) & set(map(id, split.suffix_modules))


def test_fx_split_partitions_parameters():
    model = torchvision.models.resnet18()
    split = split_model(model, "layer1", "fx")
    prefix = {id(p) for p in split.prefix_params}
    assert id(model.conv1.weight) in prefix and id(model.layer1[0].conv1.weight) in prefix
    assert id(model.layer2[0].conv1.weight) not in prefix and id(model.fc.weight) not in prefix
    # submodules are shared, not copied
    assert split._graphs[True].get_submodule("fc") is model.fc


def test_suffix_modes_restored_and_train_graph_used():
    model = timm.create_model("resnet18", num_classes=4, drop_rate=0.9).train()
    split = split_model(model, "layer3", "fx")
    f = torch.rand(4, 256, 2, 2)
    with torch.no_grad():
        a, b = split.run_suffix(f, train=False), split.run_suffix(f, train=False)
        c = split.run_suffix(f, train=True)
    assert torch.equal(a, b) and not torch.equal(a, c), "the train graph keeps forward_head's dropout"
    assert all(m.training for m in model.modules())


class _Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.b(self.a(x)) + x  # the suffix reads the input


def test_skip_around_layer_falls_back():
    split = split_model(_Skip(), "a")
    assert split.mode == "hook" and "model input" in split.reason
    with pytest.raises(ValueError, match="mode='hook'"):
        split_model(_Skip(), "a", "fx")
    with pytest.raises(RuntimeError, match="needs the model inputs"):
        split.run_suffix(torch.zeros(1, 3, 2, 2), train=False)


def test_bad_mode():
    with pytest.raises(ValueError, match="split mode must be"):
        split_model(_Skip(), "a", "graph")
