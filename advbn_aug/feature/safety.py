"""What keeps an AdvBN training step all-or-nothing and its passes clean: a snapshot of the norm layers' running
statistics to roll a refused step back, the switch that quiets feature augmenters during AdvBN's own passes, and the
checks made before a step starts (an empty batch; a multi-process run that bypasses its DistributedDataParallel
wrapper).

Used by :class:`~advbn_aug.AdvBN`; nothing here changes a number of a step that is not refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import torch
import torch.distributed as dist
from torch import nn

from advbn_aug.feature.base import attached_augmenters

__all__ = ["NormSnapshot", "augmenters_off", "check_ddp_forward", "check_batch"]

_NORM_WITH_STATS = nn.modules.batchnorm._NormBase  # BatchNorm*, SyncBatchNorm, InstanceNorm*, timm BatchNormAct2d


class NormSnapshot:
    """Copies of the running statistics (``running_mean``, ``running_var``, ``num_batches_tracked``) of ``modules``
    that track them, taken at construction; :meth:`restore` writes them back in place.

    A training forward writes nothing else of a model that a refused step must undo (it takes no optimizer step and
    touches no parameter), so restoring these buffers leaves the model as it was before that forward.
    """

    def __init__(self, modules: Sequence[nn.Module]):
        with torch.no_grad():
            self._saved = [(m, name, buf.clone()) for m in modules for name, buf in m.named_buffers(recurse=False)
                           if buf is not None]

    @staticmethod
    def modules_of(model: nn.Module, skip: Sequence[nn.Module] = ()) -> list[nn.Module]:
        """The norm layers of ``model`` whose running statistics a training forward updates, less ``skip``."""
        left_out = {id(m) for m in skip}
        return [m for m in model.modules()
                if isinstance(m, _NORM_WITH_STATS) and m.track_running_stats and id(m) not in left_out]

    def restore(self) -> None:
        """Write the saved statistics back (into the module's current buffer, wherever ``.to()`` moved it)."""
        with torch.no_grad():
            for m, name, saved in self._saved:
                buf = getattr(m, name, None)
                if isinstance(buf, torch.Tensor):
                    buf.copy_(saved)


@contextmanager
def augmenters_off(model: nn.Module) -> Iterator[None]:
    """Every :class:`~advbn_aug.feature.base.StatsAugmenter` hooked into ``model`` (MixStyle, DSU) inert inside the
    block (through its public ``disabled()`` context), each one's previous state restored afterwards."""
    with ExitStack() as stack:
        for aug in attached_augmenters(model):
            stack.enter_context(aug.disabled())
        yield


def check_batch(what: str, x: torch.Tensor) -> None:
    """Refuse an empty batch (``x.shape[0] == 0``, ``what`` names the tensor): no statistics to attack, nothing to
    train on."""
    if x.dim() > 0 and x.shape[0] == 0:
        raise ValueError(f"{what} is an empty batch (shape {tuple(x.shape)}, N = 0): AdvBN needs at least one sample "
                         "to compute feature statistics; skip empty batches (e.g. DataLoader(drop_last=True)) before "
                         "the forward")


def _wraps_ddp(net: nn.Module) -> bool:
    """``net`` is a DistributedDataParallel, or wraps one (``torch.compile(ddp)``, a wrapper's ``.module``)."""
    seen: set[int] = set()
    m: object = net
    while isinstance(m, nn.Module) and id(m) not in seen:
        if isinstance(m, nn.parallel.DistributedDataParallel):
            return True
        seen.add(id(m))
        m = getattr(m, "_orig_mod", None) or getattr(m, "module", None)
    return False


def check_ddp_forward(net: nn.Module) -> None:
    """Raise ``RuntimeError`` when ``torch.distributed`` runs several processes and ``net`` (the module
    :meth:`AdvBN.loss` would run the clean forward through) is not a DistributedDataParallel wrapper: that forward
    would bypass DDP's gradient all-reduce, and each rank would silently train its own copy of the model."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    if world > 1 and not _wraps_ddp(net):
        raise RuntimeError(
            f"torch.distributed runs {world} processes, but AdvBN.loss would run the clean forward through "
            f"{type(net).__name__}, not through its DistributedDataParallel wrapper: gradients would never be "
            "all-reduced and each rank would train its own copy. Pass the wrapper: adv.loss(images, targets, "
            "model=ddp) (or torch.compile(ddp)). To train ranks independently on purpose, call model(images) and "
            "adv.adversarial_loss(targets) yourself")
