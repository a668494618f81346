"""``AdvBNTask`` and the checkpoint helpers around it (the ``--advbn-*`` flags and :class:`AdvBNSettings` live in
:mod:`advbn_aug.integrations.timm.settings` and are re-exported here).

``AdvBNTask`` is a :class:`timm.task.ClassificationTask` whose forward returns the AdvBN (or Policy) training loss.
It attaches AdvBN to the plain model in its constructor, i.e. before timm's ``task.setup_ema`` / ``task.compile`` /
``task.prepare_distributed`` deep-copy, compile or DDP-wrap it, and before the optimizer is built on
``task.get_trainable_module()``. Checkpoints written through the task (``CheckpointSaver(task=task)``) hold a plain
timm ``state_dict`` (the adversarial BatchNorm copies removed, loadable by ``timm.create_model(...,
checkpoint_path=...)``); the copies go to ``task_state['advbn_aux']`` so ``resume_task_checkpoint`` restores them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from advbn_aug.eval.checkpoint import AUX_STATE_KEY
from advbn_aug.feature.advbn import AdvBN
from advbn_aug.feature.dual_norm import is_dual_norm
from advbn_aug.integrations.timm.settings import (
    SPLIT_BN_VERSION,
    AdvBNSettings,
    add_advbn_args,
    check_timm_args,
    dual_batch_norm,
    settings_from_args,
    timm_version,
)
from advbn_aug.policy import Policy

try:  # the task API landed in timm 1.0.23
    from timm.task import ClassificationTask
    from timm.utils.model import unwrap_model

    HAS_TASK_API = True
except ImportError:  # pragma: no cover - older timm: the launcher patches train_one_epoch instead
    ClassificationTask = nn.Module  # type: ignore[misc,assignment]
    HAS_TASK_API = False

    def unwrap_model(model: nn.Module) -> nn.Module:  # type: ignore[misc]
        while hasattr(model, "module") or hasattr(model, "_orig_mod"):
            model = getattr(model, "module", None) or model._orig_mod
        return model

__all__ = ["AdvBNSettings", "AdvBNTask", "add_advbn_args", "settings_from_args", "check_timm_args", "dual_batch_norm",
           "timm_version", "has_task_api", "aux_prefixes", "split_aux_state", "export_plain_checkpoint",
           "adversarial_criterion", "AUX_STATE_KEY", "TASK_API_VERSION", "SPLIT_BN_VERSION"]

TASK_API_VERSION = (1, 0, 23)


def has_task_api() -> bool:
    """True where timm has ``timm.task.ClassificationTask`` (>= 1.0.23), i.e. train.py delegates steps to a task."""
    return HAS_TASK_API and timm_version() >= TASK_API_VERSION


# ---------------------------------------------------------------------------------------------- state dicts
def aux_prefixes(model: nn.Module) -> tuple[str, ...]:
    """``state_dict`` key prefixes of the adversarial norm copies in ``model`` (``'layer2.0.bn1.aux_bn.'``, ...)."""
    model = unwrap_model(model)
    return tuple(f"{name}.aux_bn." if name else "aux_bn." for name, m in model.named_modules() if is_dual_norm(m))


def split_aux_state(state_dict: Mapping[str, Any], prefixes: tuple[str, ...]
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a state dict into ``(plain, aux)``: ``plain`` has the model's original keys, ``aux`` the copies."""
    plain: dict[str, Any] = {}
    aux: dict[str, Any] = {}
    for k, v in state_dict.items():
        (aux if k.startswith(prefixes) else plain)[k] = v
    return plain, aux


def _merge_aux_state(plain: Mapping[str, Any], aux: Mapping[str, Any] | None, prefixes: tuple[str, ...]
                     ) -> dict[str, Any]:
    """The full state of an attached model; aux keys missing from ``aux`` start as copies of their clean BN."""
    full = dict(plain)
    aux = dict(aux or {})
    for prefix in prefixes:
        clean = prefix[: -len("aux_bn.")]
        for k, v in plain.items():
            if k.startswith(clean) and "." not in k[len(clean):]:
                full[prefix + k[len(clean):]] = aux.pop(prefix + k[len(clean):], v)
    full.update(aux)  # anything left is reported by a strict load_state_dict
    return full


def export_plain_checkpoint(src: str, dst: str) -> list[str]:
    """Write ``dst`` = checkpoint ``src`` with every ``*.aux_bn.*`` key removed from ``state_dict``/
    ``state_dict_ema``/``model``/``model_ema`` (for checkpoints of the legacy, pre-task timm loop); returns the
    removed keys. The result loads with ``timm.create_model(name, checkpoint_path=dst)``.
    """
    checkpoint = torch.load(src, map_location="cpu", weights_only=False)
    removed: list[str] = []
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{src} does not hold a checkpoint dict")
    holders = [checkpoint] if all(isinstance(v, torch.Tensor) for v in checkpoint.values()) else \
        [checkpoint[k] for k in ("state_dict", "state_dict_ema", "model", "model_ema") if isinstance(
            checkpoint.get(k), dict)]
    for sd in holders:
        for k in [k for k in sd if ".aux_bn." in f".{k}"]:
            del sd[k]
            removed.append(k)
    torch.save(checkpoint, dst)
    return removed


# ---------------------------------------------------------------------------------------------- the task
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def adversarial_criterion(criterion: Any) -> Criterion:
    """The criterion ``(logits (N, K), target) -> scalar loss`` for the adversarial term: ``criterion`` itself, or
    for timm's ``JsdCrossEntropy`` (which scores split 0 only) its (smoothed) cross-entropy, which scores every
    split; ``None`` gives ``F.cross_entropy``."""
    if hasattr(criterion, "cross_entropy_loss") and hasattr(criterion, "num_splits"):
        return criterion.cross_entropy_loss
    return criterion if criterion is not None else F.cross_entropy


class AdvBNTask(ClassificationTask):  # type: ignore[misc,valid-type]
    """timm ``ClassificationTask`` whose forward returns ``loss = task loss + weight * AdvBN adversarial loss``.

    Args:
        model: the plain model (not DDP-wrapped, not compiled): AdvBN hooks into it here.
        *args, **kwargs: ``ClassificationTask`` arguments (``criterion``, ``device``, ``dtype``, ``verbose``...).
        settings: what to build; default: the class's ``settings`` (see :meth:`configured`) or paper AdvBN.

    ``forward(input, target)`` returns ``{'loss', 'output', 'loss_task', 'loss_adv'}`` (the last only while the
    adversarial term is on). With timm's AugMix splits (``--aug-splits N``), the adversarial term covers all ``N``
    splits with the targets repeated; with ``JsdCrossEntropy`` it uses that loss's cross-entropy. Call
    :meth:`set_epoch` each epoch for ``start_epoch`` (the launcher and the trainer do). While the adversarial term is
    off (warm-up, ``weight=0``, Policy schedules) the adversarial BatchNorm parameters keep their exact values; call
    :meth:`watch_optimizer` so the optimizer also leaves their state alone under DDP.
    """

    settings: ClassVar[AdvBNSettings | None] = None
    _live: ClassVar[weakref.WeakSet] = weakref.WeakSet()

    def __init__(self, model: nn.Module, *args: Any, settings: AdvBNSettings | None = None, **kwargs: Any):
        if hasattr(model, "_orig_mod") or isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            raise TypeError("AdvBNTask needs the plain model: create the task before torch.compile / DDP "
                            "(timm's task.compile() and task.prepare_distributed() do that afterwards)")
        super().__init__(model, *args, **kwargs)
        s = settings or type(self).settings or AdvBNSettings()
        self.advbn_settings = s
        self.epoch = 0
        self.policy: Policy | None = None
        self.advbn: AdvBN | None = None
        if s.policy is not None:
            self.policy = Policy(s.policy)
            if self.policy.config.mean is None:
                self._fill_policy_normalisation(model)
            self.policy.attach(model)
        elif s.advbn is not None:
            self.advbn = AdvBN.from_config(s.advbn).attach(model)
        self._aux_prefixes = aux_prefixes(model)
        self._aux_params = [p for m in model.modules() if is_dual_norm(m) for p in m.aux_bn.parameters()]
        self._aux_snapshot: list[torch.Tensor] | None = None
        self._watched: weakref.WeakSet = weakref.WeakSet()
        self._step = 0
        self._denorm: tuple[torch.Tensor, torch.Tensor] | None = None
        AdvBNTask._live.add(self)

    @classmethod
    def live_tasks(cls) -> list[AdvBNTask]:
        """The AdvBN tasks created in this process that are still alive (what the launcher patches reach)."""
        return list(AdvBNTask._live)

    @classmethod
    def configured(cls, settings: AdvBNSettings) -> type[AdvBNTask]:
        """A subclass with ``settings`` bound: a drop-in for ``ClassificationTask`` with its constructor signature."""
        return type(cls.__name__, (cls,), {"settings": settings, "__module__": cls.__module__})

    def _fill_policy_normalisation(self, model: nn.Module) -> None:
        s = self.advbn_settings
        mean, std = s.mean, s.std
        if mean is None or std is None:
            from timm.data import resolve_data_config

            cfg = resolve_data_config({}, model=model)
            mean, std = mean or cfg["mean"], std or cfg["std"]
        assert self.policy is not None
        self.policy.config.mean, self.policy.config.std = [float(v) for v in mean], [float(v) for v in std]

    # ------------------------------------------------------------------ schedule
    def set_epoch(self, epoch: int) -> None:
        """The epoch about to be trained (for ``start_epoch`` and Policy schedules)."""
        self.epoch = int(epoch)
        self._step = 0

    @property
    def adversarial_active(self) -> bool:
        s = self.advbn_settings
        return s.enabled and s.weight > 0 and self.epoch >= s.start_epoch

    def _term_active(self, step: int) -> bool:
        """Whether step ``step`` of this epoch adds an adversarial term (Policy: a feature augmenter is scheduled)."""
        if not self.adversarial_active:
            return False
        if self.policy is not None:
            return any(schedule.active(self.epoch, step) for _, schedule in self.policy.features)
        return True

    # ------------------------------------------------------------------ distributed / optimizer / EMA
    def prepare_distributed(self, device_ids: list | None = None, **ddp_kwargs: Any) -> AdvBNTask:
        """timm's DDP wrapping; ``device_ids`` (and ``output_device``) are dropped for a model on CPU.

        timm's train.py passes ``device_ids=[device]`` whatever the device, and DDP accepts device ids only for
        accelerator modules, so ``torchrun ... train.py --device cpu`` (gloo) would fail.
        """
        if all(p.device.type == "cpu" for p in self.trainable_module.parameters()):
            device_ids = None
            ddp_kwargs.pop("output_device", None)
        return super().prepare_distributed(device_ids=device_ids, **ddp_kwargs)

    def watch_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer`` skip the aux BN parameters while the adversarial term is off (idempotent).

        Under DDP without ``find_unused_parameters`` they get zero gradients in those steps; a step pre-hook sets
        those to ``None``, so weight decay and momentum leave the parameters and their optimizer state untouched.
        Without it the values are still kept (restored before each forward), but the optimizer state (momentum
        buffers) accumulates weight decay. The launcher and the trainer call this.
        """
        if self._aux_params and optimizer not in self._watched:
            optimizer.register_step_pre_hook(self._skip_aux_step)
            self._watched.add(optimizer)

    def _skip_aux_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._aux_snapshot is not None:  # the last forward had no adversarial term
            for p in self._aux_params:
                p.grad = None

    def update_ema(self, step: int | None = None) -> None:
        self._restore_aux()
        super().update_ema(step)

    # ------------------------------------------------------------------ aux BatchNorms while the term is off
    def _hold_aux(self, active: bool) -> None:
        """Keep the aux BN parameters exactly as they are while the adversarial term is off.

        An optimizer step can move them although no adversarial pass used them (zero DDP gradients with weight
        decay or momentum): the first inactive step snapshots them, later inactive steps (and ``update_ema`` and
        checkpoints) restore them, and the first active step restores them and drops the snapshot.
        """
        if not self._aux_params:
            return
        if active:
            self._restore_aux()
            self._aux_snapshot = None
        elif self._aux_snapshot is None:
            self._aux_snapshot = [p.detach().clone() for p in self._aux_params]
        else:
            self._restore_aux()

    @torch.no_grad()
    def _restore_aux(self) -> None:
        for p, value in zip(self._aux_params, self._aux_snapshot or ()):
            p.copy_(value)

    def _unused_aux_term(self) -> torch.Tensor | None:
        """Under DDP without ``find_unused_parameters``: a zero touching the aux BN parameters, which the reducer
        expects gradients for although no adversarial pass used them. Otherwise ``None``: their gradients stay
        ``None`` and optimizers skip them."""
        module = self.trainable_module
        if not isinstance(module, nn.parallel.DistributedDataParallel) or module.find_unused_parameters:
            return None
        params = [p for p in self._aux_params if p.requires_grad]
        if not params:
            return None
        return torch.stack([p.reshape(-1)[0] for p in params]).sum() * 0.0

    # ------------------------------------------------------------------ forward
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        step = self._step
        self._step = step + 1
        active = self._term_active(step)
        self._hold_aux(active)
        if self.policy is not None and self.adversarial_active:
            return self._policy_forward(input, target, step, active)
        output = self.trainable_module(input)
        loss = self.criterion(output, target)
        result = {"loss_task": loss.detach(), "output": output}
        if self.advbn is not None and active:
            splits = output.shape[0] // target.shape[0]
            adv_target = target.repeat(splits, *([1] * (target.dim() - 1))) if splits > 1 else target
            adv = self.advbn.adversarial_loss(adv_target, adversarial_criterion(self.criterion))
            loss = loss + self.advbn_settings.weight * adv
            result["loss_adv"] = adv.detach()
        else:
            if self.advbn is not None:
                self.advbn.discard()
            zero = self._unused_aux_term()
            if zero is not None:
                loss = loss + zero
        result["loss"] = loss
        return result

    def _policy_forward(self, input: torch.Tensor, target: torch.Tensor, step: int, active: bool
                        ) -> dict[str, torch.Tensor]:
        """Undo the loader's normalisation, then run the Policy (stages, AugMix views, JSD, feature terms)."""
        assert self.policy is not None and self.policy.config.mean is not None
        if self._denorm is None or self._denorm[0].device != input.device:
            mean = torch.tensor(self.policy.config.mean, device=input.device).view(1, -1, 1, 1)
            std = torch.tensor(self.policy.config.std, device=input.device).view(1, -1, 1, 1)
            self._denorm = (mean, std)
        mean, std = self._denorm
        images = (input.float() * std + mean).clamp_(0.0, 1.0)
        outputs: list[torch.Tensor] = []
        handle = self.trainable_module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        try:
            loss, info = self.policy.step(self.trainable_module, images, target, epoch=self.epoch, step=step,
                                          criterion=adversarial_criterion(self.criterion))
        finally:
            handle.remove()
        if not active:
            zero = self._unused_aux_term()
            if zero is not None:
                loss = loss + zero
        result = {k: v for k, v in info.items() if isinstance(v, torch.Tensor)}
        result.update(loss=loss, output=outputs[-1] if outputs else None)
        return result

    # ------------------------------------------------------------------ checkpoints
    def get_checkpoint_state(self, ema: bool = False, unwrap_fn: Callable[[nn.Module], nn.Module] = unwrap_model
                             ) -> dict[str, Any]:
        """timm's checkpoint entries with a plain ``state_dict``; aux BN copies under ``task_state['advbn_aux']``."""
        self._restore_aux()
        state = super().get_checkpoint_state(ema=ema, unwrap_fn=unwrap_fn)
        model_key, task_key = ("state_dict_ema", "task_state_ema") if ema else ("state_dict", "task_state")
        if model_key in state and self._aux_prefixes:
            plain, aux = split_aux_state(state[model_key], self._aux_prefixes)
            state[model_key] = plain
            state[task_key] = {**state.get(task_key, {}), AUX_STATE_KEY: aux}
        return state

    def load_checkpoint_state(self, state_dict: dict[str, Any], task_state: dict[str, Any] | None = None,
                              ema: bool = False, strict: bool = True) -> None:
        """Load a checkpoint of :meth:`get_checkpoint_state`, or a plain timm one (aux BNs start as clean copies)."""
        rest = dict(task_state or {})
        aux = rest.pop(AUX_STATE_KEY, None)
        plain, aux_inline = split_aux_state(state_dict, self._aux_prefixes)  # checkpoints of older versions
        full = _merge_aux_state(plain, {**aux_inline, **(aux or {})}, self._aux_prefixes)
        super().load_checkpoint_state(full, rest or None, ema=ema, strict=strict)
        if not ema:
            self._aux_snapshot = None  # the loaded values are the ones to keep

    def plain_state_dict(self, ema: bool = False) -> dict[str, torch.Tensor]:
        """The (EMA) model's ``state_dict`` without the aux BN copies: what ``timm.create_model`` loads."""
        module = self.get_trainable_module(ema=ema)
        if module is None:
            raise RuntimeError("no EMA model: call task.setup_ema() first")
        return split_aux_state(unwrap_model(module).state_dict(), self._aux_prefixes)[0]
