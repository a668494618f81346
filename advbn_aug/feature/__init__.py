"""advbn_aug.feature."""
