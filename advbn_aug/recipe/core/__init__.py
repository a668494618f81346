"""advbn_aug.recipe.core."""
