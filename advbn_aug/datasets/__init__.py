"""advbn_aug.datasets."""
