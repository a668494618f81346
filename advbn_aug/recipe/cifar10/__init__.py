"""advbn_aug.recipe.cifar10."""
