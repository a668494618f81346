"""advbn_aug.integrations.timm."""
