"""A direct, hand-written implementation of the specification (docs/algorithm.md), used to check the plugin numerically.

The model is split by hand into ``g1`` / ``g2`` callables; the dual BatchNorm is modelled by two copies of the model:
``clean`` (clean BN) and ``adv`` (adversarial BN, initialised from the clean one), sharing nothing.
"""

import torch
import torch.nn.functional as F


def reference_attack(g2_eval, f, y, eps=1.1, alpha=0.2, steps=6, clamp=True):
    dims = (0, 2, 3) if f.dim() == 4 else (0, 1)
    mu = f.mean(dim=dims, keepdim=True)
    m = torch.ones_like(mu)
    s = torch.ones_like(mu)
    for _ in range(steps):
        m.requires_grad_(True)
        s.requires_grad_(True)
        adv = (f - mu) * s + mu * m
        if clamp:
            adv = torch.clamp(adv, min=0)
        loss = F.cross_entropy(g2_eval(adv), y)
        gm, gs = torch.autograd.grad(loss, (m, s))
        with torch.no_grad():
            m = torch.clamp(m + alpha * gm.sign(), 1 - eps, 1 + eps)
            s = torch.clamp(s + alpha * gs.sign(), 1 - eps, 1 + eps)
    m, s = m.detach(), s.detach()
    adv = (f - mu) * s + mu * m
    return (adv.clamp(min=0) if clamp else adv), m, s


def reference_step(clean_model, adv_model, g1, g2, x, y, clamp=True):
    """Returns (clean loss, adv loss, m, s); gradients land in both models' parameters."""
    clean_model.train()
    with torch.no_grad():
        f = g1(clean_model, x)
    clean_loss = F.cross_entropy(g2(clean_model, f), y)
    adv_model.eval()
    f_adv, m, s = reference_attack(lambda z: g2(adv_model, z), f, y, clamp=clamp)
    adv_model.train()
    adv_loss = F.cross_entropy(g2(adv_model, f_adv), y)
    (clean_loss + adv_loss).backward()
    return clean_loss.detach(), adv_loss.detach(), m, s
