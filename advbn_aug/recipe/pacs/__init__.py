"""advbn_aug.recipe.pacs."""
