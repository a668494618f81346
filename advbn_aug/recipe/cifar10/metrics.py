"""The CIFAR-10 recipe's metrics: each evaluation mode's accuracy read from a run's ``result.json`` (clean JPEG and
lossless, mCA, both BatchNorm routes, test-time adaptation, Stylized-CIFAR-10 by strength, decoded sets), and the rows
its ``evidence.png`` shows. The machinery that pairs them by seed is :mod:`advbn_aug.recipe.core.evidence`."""

from __future__ import annotations

from typing import Any

from advbn_aug.recipe.core.evidence import Metrics, adv_or_clean, get_path

__all__ = ["CIFAR10_METRICS", "EVIDENCE_PLOT_METRICS", "metric_value"]

Result = dict[str, Any]

# the CIFAR-10 recipe's rows: each hypothesis on clean, lossless, corruptions and style, through both BN routes and
# with and without test-time adaptation (the full matrix is in results.md)
EVIDENCE_PLOT_METRICS = ("clean", "lossless", "mca", "clean_adv", "mca_adv", "mca_tta_none", "mca_tta_full",
                         "mca_tta_online", "stylized", "stylized_adv", "stylized_tta_full", "decoded_advbn")


def _metrics(strengths: tuple[str, ...] = ("0.5", "0.75", "1")) -> Metrics:
    m: Metrics = {
        "clean": ("clean JPEG test", lambda r: get_path(r, "clean_acc_jpeg")),
        "lossless": ("clean lossless-1k", lambda r: get_path(r, "clean_acc_lossless")),
        "mca": ("mCA", lambda r: get_path(r, "mca")),
        "clean_adv": ("clean JPEG test, adversarial BN",
                      adv_or_clean("adv_route", "clean_acc_jpeg", clean=("clean_acc_jpeg",))),
        "mca_adv": ("mCA, adversarial BN", adv_or_clean("adv_route", "mca", clean=("mca",))),
    }
    for mode in ("none", "full", "online"):
        m[f"mca_tta_{mode}"] = (f"mCA, TTA {mode} (TTA subset)",
                                lambda r, mode=mode: get_path(r, "extras", "tta", "modes", mode, "mca"))
        m[f"clean_tta_{mode}"] = (f"clean, TTA {mode} (TTA subset)",
                                  lambda r, mode=mode: get_path(r, "extras", "tta", "modes", mode, "clean_acc"))
    m["stylized"] = ("Stylized-CIFAR-10 (mean over strengths)",
                     lambda r: get_path(r, "extras", "stylized", "clean", "none", "mean"))
    for s in strengths:
        m[f"stylized_{s}"] = (f"Stylized-CIFAR-10, strength {s}",
                              lambda r, s=s: get_path(r, "extras", "stylized", "clean", "none", "accuracy", s))
    m["stylized_adv"] = ("Stylized-CIFAR-10 (mean), adversarial BN",
                         adv_or_clean("stylized", "adv", "none", "mean",
                                       clean=("extras", "stylized", "clean", "none", "mean")))
    for mode in ("full", "online"):
        m[f"stylized_tta_{mode}"] = (f"Stylized-CIFAR-10 (mean), TTA {mode}",
                                     lambda r, mode=mode: get_path(r, "extras", "stylized", "clean", mode, "mean"))
    for variant, label in (("advbn", "AdvBN-perturbed"), ("adain", "AdaIN-swapped"), ("reconstruct", "reconstructed")):
        m[f"decoded_{variant}"] = (f"decoded {label} test images",
                                   lambda r, v=variant: get_path(r, "extras", "decoded", "clean", v))
        m[f"decoded_{variant}_adv"] = (f"decoded {label} test images, adversarial BN",
                                       adv_or_clean("decoded", "adv", variant,
                                                     clean=("extras", "decoded", "clean", variant)))
    return m


CIFAR10_METRICS = _metrics()


def metric_value(r: Result, key: str) -> float | None:
    """Metric ``key`` of run result ``r`` (a fraction), or ``None`` when the run lacks it."""
    return CIFAR10_METRICS[key][1](r)

