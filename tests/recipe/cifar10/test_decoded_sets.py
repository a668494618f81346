"""Decoded-set numbers in the table only within one decoded set (advbn_aug.recipe.cifar10.generated_sets for
``DECODED``), on hand-made run results, independently of the Stylized sets; and the ``decoded`` entry's record of
the sets it saw (the sha256 of their uint8 images), which its key does not hold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ..._recipe_toy import toy_config

X, Y = "ab" * 32, "cd" * 32  # set_sha256 of sets decoded on two other machines
VARIANTS = ("advbn", "adain", "reconstruct")


def _run(arm: str, seed: int, decoded: float | None = None, set_sha256: str | None = None,
         stylized: float | None = None, stylized_set: str | None = None, **kw):
    """A run result with the fields the table reads; ``decoded``: its accuracy on every decoded variant (``None``:
    no entry) on set ``set_sha256`` (``None``: recorded before set ids were); ``stylized`` likewise."""
    from advbn_aug.recipe.cifar10.config import DEFAULT_ARMS

    r = {"arm": DEFAULT_ARMS[arm].to_dict(), "seed": seed, "model": "resnet20", "sha256": f"{seed + 10:x}" * 64,
         "train_seconds": 12.0, "eval_seconds": 3.0, "clean_acc_jpeg": 0.9, "clean_acc_lossless": 0.92,
         "jpeg_gap": 0.01, "mca": 0.6, "mca_benchmark15": 0.6, "per_corruption": {"contrast": 0.6},
         "per_severity": {"3": 0.6}, "extras": {}, **kw}
    if decoded is not None:
        entry = {"key": "k", "images": 1000, "clean": {v: decoded for v in VARIANTS},
                 "adv": {v: decoded - 0.1 for v in VARIANTS}}  # read for AdvBN arms only
        r["extras"]["decoded"] = entry if set_sha256 is None else {**entry, "set_sha256": set_sha256}
    if stylized is not None:
        entry = {"key": "k", "images": 1000, "clean": {"none": {"mean": stylized, "accuracy": {"1": stylized}}}}
        r["extras"]["stylized"] = entry if stylized_set is None else {**entry, "set_sha256": stylized_set}
    return r


def _runs() -> dict[str, list[dict]]:
    """Decoded: standard seeds 0-2 legacy, seed 3 on X; advbn seeds 0-1 legacy, seeds 2-3 on X. Stylized: every run
    on set Y (so the decoded sets decide alone which decoded numbers pair)."""
    def run(arm, seed, acc, dec_set=None):
        return _run(arm, seed, acc, dec_set, stylized=0.4 + 0.01 * seed, stylized_set=Y)
    return {"standard": [run("standard", s, 0.30 + 0.01 * s) for s in range(3)] + [run("standard", 3, 0.90, X)],
            "advbn": [run("advbn", s, 0.35 + 0.01 * s) for s in range(2)]
            + [run("advbn", s, 0.80 + 0.01 * s, X) for s in (2, 3)]}


def test_a_runs_decoded_set_is_its_recorded_sha256_or_the_legacy_label():
    from advbn_aug.recipe.cifar10.decoded import DECODED, LEGACY_SET
    from advbn_aug.recipe.cifar10.generated_sets import run_set, set_label

    assert run_set(DECODED, _run("standard", 0, 0.3)) == LEGACY_SET == "original 2026-11-30 set"
    assert run_set(DECODED, _run("standard", 0, 0.3, X)) == X
    assert run_set(DECODED, _run("standard", 0, stylized=0.4, stylized_set=Y)) is None  # Stylized is another mode
    moved = _run("standard", 0, extras_on_other_sets={"decoded": {"clean": {"advbn": 0.5}}})
    assert run_set(DECODED, moved) is None  # kept by hand under extras_on_other_sets: out of the table
    assert set_label(X) == f"sha256 {X[:12]}" and set_label(LEGACY_SET) == LEGACY_SET and set_label(None) == "None"
    assert DECODED.is_metric("decoded_advbn_adv") and not DECODED.is_metric("stylized")
    assert not DECODED.is_metric("decodedx")


def test_decoded_pairs_only_runs_on_the_same_set():
    from advbn_aug.recipe.cifar10.decoded import DECODED, LEGACY_SET
    from advbn_aug.recipe.cifar10.generated_sets import main_set, pair_sets

    by_arm = _runs()
    # seeds 0, 1 legacy in both; seed 2 mismatched (legacy vs X); seed 3 on X in both, fewer pairs than legacy
    assert pair_sets(DECODED, by_arm, "advbn", "standard") == {"set": LEGACY_SET, "seeds": [0, 1],
                                                               "dropped_mismatch": 1, "dropped_other_set": 1}
    assert pair_sets(DECODED, by_arm, "advbn", "standard", prefer=X)["set"] == LEGACY_SET  # prefer breaks ties only
    tie = {a: [_run(a, 0, 0.3), _run(a, 1, 0.3, X)] for a in ("standard", "advbn")}
    assert pair_sets(DECODED, tie, "advbn", "standard", prefer=X)["set"] == X
    assert pair_sets(DECODED, tie, "advbn", "standard")["set"] == LEGACY_SET
    assert main_set(DECODED, by_arm) == LEGACY_SET  # 5 legacy runs, 3 on X
    assert main_set(DECODED, {"standard": [_run("standard", 0)]}) is None


def test_decoded_means_and_differences_never_mix_sets_and_stylized_is_kept_apart():
    from advbn_aug.recipe.cifar10.config import HYPOTHESES
    from advbn_aug.recipe.cifar10.decoded import DECODED, LEGACY_SET
    from advbn_aug.recipe.cifar10.generated_sets import modes_and_evidence
    from advbn_aug.recipe.cifar10.stylized_sets import STYLIZED

    by_arm = _runs()
    modes, ev, records = modes_and_evidence(by_arm, HYPOTHESES, (STYLIZED, DECODED))
    # per-arm decoded means on the legacy set: the runs on X (0.8+, 0.9) are left out
    assert modes["standard"]["decoded_advbn"]["n"] == 3
    assert modes["standard"]["decoded_advbn"]["mean"] == pytest.approx(0.31)
    assert modes["advbn"]["decoded_adain"]["n"] == 2
    assert modes["advbn"]["decoded_adain"]["mean"] == pytest.approx(0.355)
    assert modes["advbn"]["stylized"]["n"] == 4  # every Stylized number is on Y: all kept
    cell = ev["advbn_vs_standard"]["decoded_reconstruct"]
    assert cell["seeds"] == [0, 1] and cell["set"] == LEGACY_SET and cell["mean"] == pytest.approx(0.05)
    cell = ev["advbn_vs_standard"]["decoded_advbn_adv"]  # adv-route metrics too (AdvBN's adv BN vs standard)
    assert cell["seeds"] == [0, 1] and cell["set"] == LEGACY_SET and cell["mean"] == pytest.approx(-0.05)
    styl = ev["advbn_vs_standard"]["stylized"]
    assert styl["seeds"] == [0, 1, 2, 3] and styl["set"] == Y and styl["mean"] == pytest.approx(0.0)
    assert "set" not in ev["advbn_vs_standard"]["mca"] and ev["advbn_vs_standard"]["mca"]["n"] == 4
    assert records["decoded"] == {
        "main": LEGACY_SET,
        "runs": {LEGACY_SET: ["standard/seed0", "standard/seed1", "standard/seed2", "advbn/seed0", "advbn/seed1"],
                 X: ["standard/seed3", "advbn/seed2", "advbn/seed3"]},
        "comparisons": {"advbn_vs_standard": {"set": LEGACY_SET, "pairs": 2, "dropped_mismatch": 1,
                                              "dropped_other_set": 1}}}
    assert records["stylized"]["main"] == Y and records["stylized"]["runs"] == {Y: [
        f"{a}/seed{s}" for a in ("standard", "advbn") for s in range(4)]}
    assert by_arm["advbn"][3]["extras"]["decoded"]["set_sha256"] == X  # the results themselves are not changed


def test_the_table_says_which_set_each_decoded_figure_is_on(tmp_path):
    from advbn_aug.recipe import aggregate

    runs = [r for rs in _runs().values() for r in rs]
    runs.append(_run("mixstyle", 0, extras_on_other_sets={"decoded": {"clean": {v: 0.9 for v in VARIANTS}}}))
    doc = aggregate(runs, toy_config(), tmp_path, ["standard", "advbn", "mixstyle"])
    assert doc["decoded_sets"]["main"] == "original 2026-11-30 set" and doc["stylized_sets"]["main"] == Y
    assert "decoded_advbn" not in doc["modes"]["mixstyle"]  # its entry under extras_on_other_sets is not read
    md = (tmp_path / "results.md").read_text()
    assert "## Decoded test sets" in md and "## Stylized-CIFAR-10 sets" in md
    assert "so decoded numbers are compared only within one set" in md
    assert "- sets: `original 2026-11-30 set` (5 runs); `sha256 abababababab` (3 runs)." in md
    assert ("- decoded means per arm (Evaluation modes) are on the `original 2026-11-30 set`; left out: 3 runs on "
            "other sets (standard/seed3, advbn/seed2, advbn/seed3).") in md
    assert ("- paired decoded differences (2 pairs dropped for set mismatch in all): AdvBN vs standard: 2 pairs on "
            "`original 2026-11-30 set`, 2 dropped (1 with the two runs on different sets, 1 on another set).") in md
    assert "- paired Stylized differences (0 pairs dropped for set mismatch in all)" in md


def test_no_decoded_runs_no_section(tmp_path):
    from advbn_aug.recipe import aggregate

    aggregate([_run("standard", 0), _run("advbn", 0)], toy_config(), tmp_path, ["standard", "advbn"])
    assert "Decoded test sets" not in (tmp_path / "results.md").read_text()


def _write_sets(folder, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Decoded sets of 20 random images per variant, cached in ``folder`` as decoded_sets leaves them (with a
    stand-in decoder file, so nothing is trained)."""
    from advbn_aug.visualise.testset import TESTSET_FILE

    rng = np.random.default_rng(seed)
    (folder / "decoder").mkdir(parents=True)
    (folder / "decoder" / "decoder.pt").write_bytes(b"stand-in")
    sets = {}
    for v in VARIANTS:
        sets[v] = (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), np.arange(20) % 10)
        (folder / v).mkdir()
        np.savez(folder / v / TESTSET_FILE, x=sets[v][0], y=sets[v][1])
    return sets


def test_decoded_entry_records_the_sets_it_saw(tmp_path):
    """The entry holds the sha256 of each variant's uint8 images and of the set; sets cached alike but decoded to
    other pixels get other hashes; the entry's key does not change."""
    import torch

    from advbn_aug.eval.fingerprint import array_sha256, parts_sha256
    from advbn_aug.models.cifar_resnet import cifar_resnet
    from advbn_aug.recipe.cifar10.decoded import decoded_key, set_identity
    from advbn_aug.recipe.cifar10.eval_modes import run_mode

    cfg = toy_config(extras=["decoded"], decoded={"epochs": 1, "train_images": 64, "steps": 1, "images": 20})
    torch.manual_seed(0)
    models = {"clean": cifar_resnet(20).eval()}
    data = SimpleNamespace(data_dir=None)

    def evaluate(root):
        return run_mode("decoded", cfg, models, data, torch.device("cpu"), False, "standard/seed0", None, root)

    here = _write_sets(tmp_path / "a" / f"decoded-{decoded_key(cfg)}", seed=0)
    out = evaluate(tmp_path / "a")
    assert set(out) == {"images", "clean", "sha256", "set_sha256"} and out["images"] == 20
    assert out["sha256"] == {v: array_sha256(x) for v, (x, _) in here.items()}
    assert out["set_sha256"] == parts_sha256(out["sha256"])
    assert set_identity(here) == {"sha256": out["sha256"], "set_sha256": out["set_sha256"]}  # the back-fill path
    other = _write_sets(tmp_path / "b" / f"decoded-{decoded_key(cfg)}", seed=0)
    x = other["adain"][0].copy()
    x[0, 0, 0, 0] ^= 1  # one pixel decoded otherwise on another machine
    np.savez(tmp_path / "b" / f"decoded-{decoded_key(cfg)}" / "adain" / "test_lossless1000.npz", x=x,
             y=other["adain"][1])
    out_b = evaluate(tmp_path / "b")
    assert out_b["sha256"]["adain"] != out["sha256"]["adain"] and out_b["set_sha256"] != out["set_sha256"]
    assert {v: out_b["sha256"][v] for v in ("advbn", "reconstruct")} == {
        v: out["sha256"][v] for v in ("advbn", "reconstruct")}


def test_decoded_key_of_the_full_recipe_is_that_of_the_committed_runs():
    """Regression: the committed runs' ``decoded`` entries carry key 7197f25c5d54 (sets cached under
    ``decoded-59c62c0d7ff5``); recording the set's hashes must not change it (that would re-evaluate every run)."""
    from advbn_aug.recipe.cifar10.config import FULL
    from advbn_aug.recipe.cifar10.decoded import decoded_key
    from advbn_aug.recipe.core.eval_modes import extra_key

    assert decoded_key(FULL) == "59c62c0d7ff5"
    assert extra_key(FULL, "decoded") == "7197f25c5d54"
