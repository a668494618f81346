"""advbn_aug/recipe/cifar10/metrics.py: the CIFAR-10 metrics read the right field of a result, the adversarial-route
rows fall back to the clean route for arms without AdvBN, and evidence.png's rows are all defined."""

from advbn_aug.recipe.cifar10.metrics import CIFAR10_METRICS, EVIDENCE_PLOT_METRICS, metric_value


def _result(advbn: bool) -> dict:
    r = {"arm": {"name": "a", "advbn": advbn}, "seed": 0, "mca": 0.6, "clean_acc_jpeg": 0.9,
         "extras": {"stylized": {"clean": {"none": {"mean": 0.4, "accuracy": {"0.5": 0.5, "1": 0.3}},
                                           "full": {"mean": 0.45}}},
                    "tta": {"modes": {"full": {"mca": 0.65, "clean_acc": 0.88}}}}}
    if advbn:
        r["extras"]["adv_route"] = {"mca": 0.55, "clean_acc_jpeg": 0.85}
    return r


def test_each_metric_reads_its_own_field():
    r = _result(advbn=False)
    assert metric_value(r, "mca") == 0.6 and metric_value(r, "clean") == 0.9
    assert metric_value(r, "stylized") == 0.4 and metric_value(r, "stylized_1") == 0.3
    assert metric_value(r, "stylized_0.5") == 0.5 and metric_value(r, "stylized_tta_full") == 0.45
    assert metric_value(r, "mca_tta_full") == 0.65 and metric_value(r, "clean_tta_full") == 0.88
    assert metric_value(r, "lossless") is None and metric_value(r, "decoded_advbn") is None  # absent, not zero


def test_adversarial_route_only_for_advbn_runs():
    assert metric_value(_result(advbn=True), "mca_adv") == 0.55
    assert metric_value(_result(advbn=True), "clean_adv") == 0.85
    assert metric_value(_result(advbn=False), "mca_adv") == 0.6  # one route: the clean one
    assert metric_value(_result(advbn=True), "stylized_adv") is None  # AdvBN run without the adversarial Stylized


def test_evidence_plot_rows_are_defined_metrics():
    assert set(EVIDENCE_PLOT_METRICS) <= set(CIFAR10_METRICS)
    assert all(isinstance(label, str) and label for label, _ in CIFAR10_METRICS.values())
