"""advbn_aug/recipe/cifar10/corruption_cache.py: the pool-built cache is the one the evaluation reads."""


def test_corruption_cache_built_by_a_pool_is_the_one_the_evaluation_reads(tmp_path):
    """The workers' corruption sets, made first by a process pool, are found by the evaluation's own call (same
    key) and equal to what it would generate; a second build generates nothing."""
    import numpy as np

    from advbn_aug.eval.datasets import corrupted_set
    from advbn_aug.recipe.cifar10.corruption_cache import build_corruption_cache

    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    assert build_corruption_cache(images, ["gaussian_noise", "contrast"], [1, 3], str(tmp_path), processes=2) == 4
    for c in ("gaussian_noise", "contrast"):
        for s in (1, 3):
            cached, hit = corrupted_set(images, c, s, dataset="cifar10", cache_dir=tmp_path)
            assert hit and np.array_equal(cached, corrupted_set(images, c, s, dataset="cifar10", use_cache=False)[0])
    assert build_corruption_cache(images, ["gaussian_noise", "contrast"], [1, 3], str(tmp_path), processes=1) == 0
