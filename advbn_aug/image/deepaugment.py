"""DeepAugment (Hendrycks et al., "The Many Faces of Robustness", ICCV 2021, arXiv 2006.16241).

An image goes through an image-to-image network (:class:`~advbn_aug.image.deepaugment_nets.CAE` or
:class:`~advbn_aug.image.deepaugment_nets.EDSR`) whose weights and activations are randomly perturbed on every pass;
the output is a distorted but recognisable image. The paper's perturbations include zeroing, negating, convolving,
transposing and applying activation functions; here, per pass (or per group of ``group_size`` images):

* weights: Gaussian noise of ``weight_noise * std(W)``, a fraction ``flip_prob`` of output filters sign-flipped,
  a fraction ``zero_prob`` of weights zeroed;
* activations (each :class:`ActivationTap` with probability ``act_prob``): one of negating a random quarter of the
  channels, transposing them spatially, convolving them with a random 3x3 kernel, replacing them with a random
  activation function of themselves, or adding noise.

Every magnitude and probability is multiplied by ``strength``: ``strength=0`` runs the unperturbed network exactly.
Parameters are drawn separately from their application (:meth:`DeepAugment.forward_parameters`), kornia-style.

Pretrained weights are not downloaded: train the networks on your own images with :func:`train_deepaugment_net`
(reconstruction for the CAE, x2 super-resolution for EDSR), or load yours with
:func:`~advbn_aug.image.deepaugment_nets.load_deepaugment_net`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from advbn_aug.image.checks import check_image_batch
from advbn_aug.image.deepaugment_nets import EDSR, ActivationTap, load_deepaugment_net

__all__ = ["DeepAugment", "train_deepaugment_net", "images_to_tensor"]

_ACT_OPS = ("negate", "transpose", "convolve", "activation", "noise")
_FUNCS: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (F.gelu, torch.sin, torch.abs, torch.tanh, F.elu)


class DeepAugment(nn.Module):
    """Perturbed image-to-image network as an augmentation: float ``(N, 3, H, W)`` in ``[0, 1]`` -> same shape.

    Args:
        net: a :class:`CAE` or :class:`EDSR` (or any image-to-image module containing ``ActivationTap``s); it is
            kept in eval mode and never modified (perturbed weights are passed functionally).
        strength: global scale of every perturbation; 0 reproduces ``net`` exactly.
        weight_noise: Gaussian weight noise, relative to each weight tensor's std.
        flip_prob: fraction of output filters whose sign is flipped.
        zero_prob: fraction of weights set to zero.
        act_prob: probability that an activation tap gets an activation perturbation.
        group_size: images sharing one perturbation draw (1: every image its own network).

    The EDSR output (2x) is area-downsampled back to the input size, as DeepAugment resizes back to the input.
    """

    def __init__(self, net: nn.Module, strength: float = 1.0, *, weight_noise: float = 0.075, flip_prob: float = 0.025,
                 zero_prob: float = 0.025, act_prob: float = 0.2, group_size: int = 8):
        super().__init__()
        if not strength >= 0:
            raise ValueError(f"DeepAugment strength must be >= 0 (0 = unperturbed network), got {strength}")
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
        for name, v in (("weight_noise", weight_noise), ("flip_prob", flip_prob), ("zero_prob", zero_prob),
                        ("act_prob", act_prob)):
            if not v >= 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        self.net = net.eval().requires_grad_(False)
        self.strength = float(strength)
        self.weight_noise, self.flip_prob, self.zero_prob, self.act_prob = weight_noise, flip_prob, zero_prob, act_prob
        self.group_size = group_size
        self._taps = [m for m in net.modules() if isinstance(m, ActivationTap)]

    @classmethod
    def from_file(cls, path: str | Path, strength: float = 1.0, **kwargs: Any) -> DeepAugment:
        """Load weights saved by ``save_deepaugment_net`` (or trained with the CLI) and wrap them."""
        return cls(load_deepaugment_net(path), strength, **kwargs)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> DeepAugment:
        """From a stage spec ``{"weights": path, "strength": ..., ...}``."""
        spec = dict(spec)
        if "weights" not in spec:
            raise ValueError("a deepaugment stage spec needs 'weights': the path of a trained CAE/EDSR file "
                             "(train one with `advbn-aug deepaugment train`)")
        return cls.from_file(spec.pop("weights"), **spec)

    def extra_repr(self) -> str:
        return (f"strength={self.strength}, weight_noise={self.weight_noise}, flip_prob={self.flip_prob}, "
                f"zero_prob={self.zero_prob}, act_prob={self.act_prob}, group_size={self.group_size}")

    def train(self, mode: bool = True) -> DeepAugment:  # the wrapped network always stays in eval mode
        self.training = mode
        return self

    # ------------------------------------------------------------ parameters
    def forward_parameters(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        """One perturbation draw: ``{"weights": {name: tensor}, "acts": [(tap_index, op, args), ...]}``.

        ``weights`` maps parameter names to perturbed copies (only for ``strength > 0``). Uses the global torch RNG
        unless a CPU ``generator`` is given.
        """
        s = self.strength
        if s == 0:
            return {"weights": {}, "acts": []}
        g = generator
        weights: dict[str, torch.Tensor] = {}
        for name, p in self.net.named_parameters():
            if p.dim() < 2:  # biases: leave them
                continue
            w = p.detach()
            noise = torch.randn(w.shape, generator=g).to(w) * (self.weight_noise * s * float(w.std()))
            keep = (torch.rand(w.shape, generator=g) >= min(1.0, self.zero_prob * s)).to(w)
            flip_dim = 1 if isinstance(self._owner(name), nn.ConvTranspose2d) else 0
            shape = [1] * w.dim()
            shape[flip_dim] = w.shape[flip_dim]
            flip = torch.where(torch.rand(shape, generator=g) < min(1.0, self.flip_prob * s), -1.0, 1.0).to(w)
            weights[name] = (w + noise) * keep * flip
        acts: list[tuple[int, str, dict[str, Any]]] = []
        for i in range(len(self._taps)):
            if float(torch.rand((), generator=g)) >= min(1.0, self.act_prob * s):
                continue
            op = _ACT_OPS[int(torch.randint(len(_ACT_OPS), (), generator=g))]
            args: dict[str, Any] = {"frac": 0.25, "seed": int(torch.randint(2**31 - 1, (), generator=g))}
            if op == "convolve":
                args["kernel_scale"] = 0.25 * s
            elif op == "activation":
                args["func"] = int(torch.randint(len(_FUNCS), (), generator=g))
                args["mix"] = min(1.0, 0.5 * s)
            elif op == "noise":
                args["scale"] = 0.15 * s
            acts.append((i, op, args))
        return {"weights": weights, "acts": acts}

    def _owner(self, param_name: str) -> nn.Module:
        return self.net.get_submodule(param_name.rsplit(".", 1)[0])

    # ------------------------------------------------------------ application
    @contextmanager
    def _activation_hooks(self, acts: list[tuple[int, str, dict[str, Any]]]):
        handles = []
        try:
            for i, op, args in acts:
                handles.append(self._taps[i].register_forward_hook(
                    lambda mod, inp, out, op=op, args=args: _perturb_activation(out, op, args)))
            yield
        finally:
            for h in handles:
                h.remove()

    def _run(self, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        with self._activation_hooks(params["acts"]):
            out = functional_call(self.net, params["weights"], (x,), strict=False) if params["weights"] \
                else self.net(x)
        if isinstance(self.net, EDSR) or out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="area")
        return torch.nan_to_num(out, nan=0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, params: dict[str, Any] | None = None) -> torch.Tensor:
        """``(N, 3, H, W) -> (N, 3, H, W)``; one draw per ``group_size`` images unless ``params`` is given."""
        check_image_batch(x, "DeepAugment")
        if x.shape[1] != 3:
            raise ValueError(f"DeepAugment networks take RGB images (N, 3, H, W), got {x.shape[1]} channels")
        dtype = x.dtype
        x = x.to(next(self.net.parameters()).dtype)
        if params is not None:
            return self._run(x, params).to(dtype)
        outs = [self._run(chunk, self.forward_parameters()) for chunk in x.split(self.group_size)]
        return torch.cat(outs).to(dtype)


def _perturb_activation(h: torch.Tensor, op: str, args: dict[str, Any]) -> torch.Tensor:
    g = torch.Generator().manual_seed(args["seed"])
    c = h.shape[1]
    k = max(1, int(math.ceil(args["frac"] * c)))
    ch = torch.randperm(c, generator=g)[:k].to(h.device)
    if op == "negate":
        return h.index_copy(1, ch, -h.index_select(1, ch))
    if op == "transpose":
        if h.shape[-1] != h.shape[-2]:
            return h
        return h.index_copy(1, ch, h.index_select(1, ch).transpose(-1, -2).contiguous())
    if op == "convolve":
        kernel = torch.zeros(k, 1, 3, 3)
        kernel[:, 0, 1, 1] = 1.0
        kernel = kernel + torch.randn(k, 1, 3, 3, generator=g) * args["kernel_scale"] / 3.0
        sub = F.conv2d(h.index_select(1, ch), kernel.to(h), padding=1, groups=k)
        return h.index_copy(1, ch, sub)
    if op == "activation":
        f = _FUNCS[args["func"]]
        return h + args["mix"] * (f(h) - h)
    if op == "noise":
        noise = torch.randn(h.shape, generator=g).to(h)
        return h + noise * (args["scale"] * h.detach().std())
    raise ValueError(f"unknown activation perturbation {op!r}")


# ---------------------------------------------------------------------------------------- training
def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HWC ``uint8`` ``(N, H, W, 3)`` arrays or float ``(N, 3, H, W)`` tensors -> float ``(N, 3, H, W)`` in [0, 1]."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if isinstance(images, torch.Tensor):
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        check_image_batch(images, "train_deepaugment_net")
        return images
    raise TypeError(f"expected a numpy array or a tensor of images, got {type(images).__name__}")


def _task_batch(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(net, EDSR):  # x2 super-resolution: input the 2x area-downsampled image, target the original
        return F.avg_pool2d(x, 2), x
    return x, x


def train_deepaugment_net(net: nn.Module, images: np.ndarray | torch.Tensor, *, epochs: int = 5,
                          batch_size: int = 128, lr: float = 1e-3, device: str | torch.device = "cpu",
                          seed: int | None = 0, progress: bool = False) -> list[float]:
    """Train a CAE (reconstruction, MSE) or EDSR (x2 super-resolution, L1) on ``images``; returns per-epoch losses.

    ``images``: ``uint8 (N, H, W, 3)`` or float ``(N, 3, H, W)`` in ``[0, 1]``. Adam, random horizontal flips.
    The network is left in eval mode on ``device``.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    x_all = images_to_tensor(images)
    if isinstance(net, EDSR) and (x_all.shape[-1] % 2 or x_all.shape[-2] % 2):
        raise ValueError(f"EDSR x2 training needs even image sizes, got {tuple(x_all.shape[-2:])}")
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    if seed is not None:
        torch.manual_seed(seed)
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = F.l1_loss if isinstance(net, EDSR) else F.mse_loss
    history: list[float] = []
    n = x_all.shape[0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs * math.ceil(n / batch_size), desc=f"train {type(net).__name__}", unit="batch")
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total, count = 0.0, 0
        for i in range(0, n, batch_size):
            x = x_all[perm[i : i + batch_size]].to(device)
            flip = torch.rand(x.shape[0], generator=g) < 0.5
            x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
            inp, target = _task_batch(net, x)
            loss = loss_fn(net(inp), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * x.shape[0]
            count += x.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        history.append(total / count)
    if bar is not None:
        bar.close()
    net.eval()
    return history
