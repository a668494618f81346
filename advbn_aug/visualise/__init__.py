"""See what AdvBN does: invert a layer of your model with a trained decoder, decode AdvBN-perturbed (and MixStyle,
DSU, corrupted, AdaIN-restyled) features into images, and write an adversarial-style copy of a test set.

::

    result = train_decoder(DecoderConfig(model="resnet20", layer="layer1", threads=1))   # decoder.pt, PSNR
    make_grid(GridConfig(decoder="runs/visualise/decoder/decoder.pt"))                  # grid.png, index.html
    make_testset(TestsetConfig(variant="advbn"))                       # test_lossless1000.npz for advbn-aug eval

The command line is ``advbn-aug visualise train-decoder | grid | make-testset``.
"""

from advbn_aug._extras import require

require("advbn_aug.visualise", "eval", "cv2", "scipy")  # the corrupted rows of the grid

from advbn_aug.visualise.config import DecoderConfig, GridConfig, SourceConfig, TestsetConfig  # noqa: E402
from advbn_aug.visualise.decoder import DecoderArch, DecoderSource, FeatureDecoder, load_decoder, save_decoder  # noqa: E402
from advbn_aug.visualise.gallery import GridResult, make_grid  # noqa: E402
from advbn_aug.visualise.grid import Row, write_grid  # noqa: E402
from advbn_aug.visualise.inverter import FeatureInverter, open_inverter  # noqa: E402
from advbn_aug.visualise.shifts import AdvBNShift, SuffixModel, adain, advbn_shift  # noqa: E402
from advbn_aug.visualise.source import LayerEncoder, load_encoder  # noqa: E402
from advbn_aug.visualise.testset import TestsetResult, make_testset  # noqa: E402
from advbn_aug.visualise.train import TrainResult, psnr, train_decoder  # noqa: E402

__all__ = [
    "SourceConfig", "DecoderConfig", "GridConfig", "TestsetConfig",
    "FeatureDecoder", "DecoderArch", "DecoderSource", "load_decoder", "save_decoder",
    "LayerEncoder", "load_encoder", "FeatureInverter", "open_inverter",
    "TrainResult", "train_decoder", "psnr",
    "AdvBNShift", "SuffixModel", "advbn_shift", "adain",
    "Row", "write_grid", "GridResult", "make_grid",
    "TestsetResult", "make_testset",
]
