"""advbn_aug.recipe.core.data: the class-balanced, seeded training subset every benchmark draws."""

from __future__ import annotations

import numpy as np
import pytest

from advbn_aug.recipe.core.data import class_balanced_subset

# 40 items in 4 unequal classes (class 2 has only 7); x[i] = i, so a subset names the items it picked
_Y = np.repeat(np.arange(4), [10, 12, 7, 11])
_X = np.arange(len(_Y))


@pytest.mark.parametrize("n", [4, 8, 20, 28])
def test_a_multiple_of_the_class_count_gives_equal_class_counts(n):
    x, y = class_balanced_subset(_X, _Y, n, seed=3)
    assert len(x) == n and len(set(x.tolist())) == n  # n distinct items
    assert np.bincount(y, minlength=4).tolist() == [n // 4] * 4
    assert np.array_equal(_Y[x], y)  # each label stays with its item


def test_a_remainder_fills_from_any_class_and_a_small_class_is_taken_whole():
    x, y = class_balanced_subset(_X, _Y, 22, seed=0)
    counts = np.bincount(y, minlength=4)
    assert len(x) == 22 and len(set(x.tolist())) == 22 and counts.min() == 5 and counts.sum() == 22
    x, y = class_balanced_subset(_X, _Y, 36, seed=0)  # 9 per class asked, class 2 has 7: all of it, the rest filled
    counts = np.bincount(y, minlength=4)
    assert len(set(x.tolist())) == 36 and counts[2] == 7 and min(counts[[0, 1, 3]]) >= 9
    x, _ = class_balanced_subset(_X, _Y, 3, seed=0)  # fewer items than classes
    assert len(set(x.tolist())) == 3


def test_the_subset_is_deterministic_per_seed_and_differs_across_seeds():
    a = class_balanced_subset(_X, _Y, 12, seed=5)
    b = class_balanced_subset(_X, _Y, 12, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], class_balanced_subset(_X, _Y, 12, seed=6)[0])


def test_subsets_for_multiples_of_the_class_count_are_nested_across_n():
    """A bigger ``train_subset`` keeps the images of a smaller one (same seed), so subset sizes compare like for
    like; this holds for sizes that are multiples of the class count (the remainder is drawn afresh)."""
    picked = [set(class_balanced_subset(_X, _Y, n, seed=1)[0].tolist()) for n in (4, 8, 16, 28)]
    assert all(small < big for small, big in zip(picked, picked[1:]))


@pytest.mark.parametrize("n", [None, 40, 100])
def test_none_or_at_least_everything_gives_all_items_shuffled(n):
    x, y = class_balanced_subset(_X, _Y, n, seed=0)
    assert sorted(x.tolist()) == _X.tolist() and np.array_equal(_Y[x], y)
    assert not np.array_equal(x, _X)  # shuffled, not in input order
