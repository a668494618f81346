"""advbn_aug.models."""
