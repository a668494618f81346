"""advbn_aug.split.fx: the torch.fx split (parameters, train / eval graphs)."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from advbn_aug.split import FxSplit, FxSplitError, split_model


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


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.side, self.head = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def forward(self, x):
        self.side(x)  # computed, never used
        return self.head(x)


def test_layer_the_output_does_not_depend_on():
    with pytest.raises(FxSplitError, match=r"cannot split the model at 'side' with torch.fx: the output does not "
                                           r"depend on layer 'side'\. Use mode='hook'\.") as err:
        FxSplit(_Unused(), "side")
    assert isinstance(err.value, ValueError) and err.value.why == "the output does not depend on layer 'side'"


def test_leaves_are_called_whole_so_their_hooks_fire():
    model = timm.create_model("resnet18", num_classes=4).eval()
    traced, whole = FxSplit(model, "layer1"), FxSplit(model, "layer1", leaves=["layer3"])
    calls = []
    model.layer3.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    f = torch.rand(1, 64, 8, 8)
    with torch.no_grad():
        ref = traced.run_suffix(f, train=False)
        assert calls == [], "traced through: the hook of layer3 is not called"
        out = whole.run_suffix(f, train=False)
    assert calls == [torch.Size([1, 256, 2, 2])]
    torch.testing.assert_close(out, ref)
    assert any(n.op == "call_module" and n.target == "layer3" for n in whole.suffix_graph(False).graph.nodes)
