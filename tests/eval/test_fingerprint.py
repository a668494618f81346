"""The identity of a generated test set (advbn_aug.eval.fingerprint): pixel hashes and the check against a pin."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from advbn_aug.eval.fingerprint import array_sha256, mismatch_text, parts_sha256, pin_mismatches


def test_array_sha256_hashes_the_pixels_in_c_order():
    x = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    assert array_sha256(x) == hashlib.sha256(x.tobytes()).hexdigest()
    assert array_sha256(np.asfortranarray(x)) == array_sha256(x)  # the values, not the memory layout
    y = x.copy()
    y[1, 2, 3, 2] ^= 1  # one bit of one pixel
    assert array_sha256(y) != array_sha256(x)
    with pytest.raises(ValueError, match="uint8"):
        array_sha256(x.astype(np.int16))


def test_parts_sha256_is_the_hash_of_the_sorted_parts():
    parts = {"1": "c" * 64, "0.5": "a" * 64}
    assert parts_sha256(parts) == hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    assert parts_sha256(dict(reversed(list(parts.items())))) == parts_sha256(parts)
    assert parts_sha256({**parts, "1": "d" * 64}) != parts_sha256(parts)


def test_pin_mismatches_checks_only_pinned_parts_and_names_both_hashes():
    found = {"0.5": "a" * 64, "1": "b" * 64}
    assert pin_mismatches(found, None) == {} and pin_mismatches(found, {"0.75": "e" * 64}) == {}
    assert pin_mismatches(found, {"0.5": "a" * 64}) == {}
    bad = pin_mismatches(found, {"0.5": "a" * 64, "1": "f" * 64})
    assert bad == {"1": ("b" * 64, "f" * 64)}
    text = mismatch_text("the set", bad, "strength")
    assert text.startswith("the set differs") and f"strength 1: generated {'b' * 64}, pinned {'f' * 64}" in text
