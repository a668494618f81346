"""Package discovery (everything else is in pyproject.toml): every package under ``advbn_aug/``, plus the repository's
top-level ``integrations/`` folder shipped as ``advbn_aug.integrations``. Found, not listed, so a new subpackage
cannot be left out of the wheel."""

from setuptools import find_packages, setup


def packages() -> list[str]:
    """``advbn_aug`` and its subpackages, then ``integrations`` and its subpackages as ``advbn_aug.integrations*``."""
    core = find_packages(include=["advbn_aug", "advbn_aug.*"])
    extra = find_packages(include=["integrations", "integrations.*"])
    return core + ["advbn_aug." + p for p in extra]


if __name__ == "__main__":
    setup(packages=packages(), package_dir={"advbn_aug.integrations": "integrations"})
