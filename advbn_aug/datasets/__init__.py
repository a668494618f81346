"""Dataset loaders: CIFAR-10 (:mod:`.cifar10`) and PACS (:mod:`.pacs`), resolved from a path the user gives, then
``../shared/data``, then the usual download where one exists."""
