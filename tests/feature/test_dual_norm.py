import copy
import pickle

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

from advbn_aug.feature.dual_norm import DualBatchNorm2d, convert_dual_norm, fold_dual_norm, is_dual_norm, routed


def test_convert_route_fold_batchnorm():
    bn = nn.BatchNorm2d(4)
    bn.running_mean.fill_(0.5)
    convert_dual_norm([bn])
    assert isinstance(bn, DualBatchNorm2d) and is_dual_norm(bn)
    assert torch.equal(bn.aux_bn.running_mean, bn.running_mean)
    x = torch.randn(3, 4, 5, 5)
    bn.train()
    bn(x)  # clean route updates the clean statistics only
    assert not torch.equal(bn.running_mean, bn.aux_bn.running_mean)
    before = bn.running_mean.clone()
    with routed([bn], "adv"):
        assert bn.route == "adv"
        bn(x * 3)
    assert bn.route == "clean" and torch.equal(bn.running_mean, before)
    bn.eval()
    with routed([bn], "adv"):
        assert not bn.aux_bn.training or bn(x) is None or not bn.aux_bn.training
    fold_dual_norm([bn])
    assert type(bn) is nn.BatchNorm2d and not hasattr(bn, "aux_bn")
    assert list(bn.state_dict()) == list(nn.BatchNorm2d(4).state_dict())


def test_batchnorm_act_keeps_activation():
    bn = BatchNormAct2d(4, act_layer=nn.ReLU)
    convert_dual_norm([bn])
    bn.eval()
    x = torch.randn(2, 4, 3, 3)
    with routed([bn], "adv"):
        out = bn(x)
    assert (out >= 0).all(), "the adversarial copy must keep the activation"
    assert isinstance(bn.aux_bn, BatchNormAct2d)
    fold_dual_norm([bn])
    assert type(bn) is BatchNormAct2d


def test_layernorm_only_on_request():
    ln, bn = nn.LayerNorm(4), nn.BatchNorm2d(4)
    assert convert_dual_norm([ln, bn]) == [bn]
    assert convert_dual_norm([ln], layer_norm=True) == [ln]


def test_deepcopy_and_pickle():
    bn = nn.BatchNorm2d(4)
    convert_dual_norm([bn])
    for clone in (copy.deepcopy(bn), pickle.loads(pickle.dumps(bn))):
        assert isinstance(clone, DualBatchNorm2d) and clone.aux_bn is not bn.aux_bn


def test_bad_route():
    with pytest.raises(ValueError, match="route must be 'clean' or 'adv'"):
        with routed([], "mixed"):
            pass
