"""Integrations of ``advbn_aug`` with training frameworks, installed as ``advbn_aug.integrations``.

``advbn_aug.integrations.timm.task``: the timm pieces (``AdvBNTask``, the ``--advbn-*`` argument group);
``advbn_aug.integrations.timm.launcher``: launcher for a timm checkout's ``train.py`` (``advbn-aug timm-train``);
``advbn_aug.integrations.timm.trainer``: a self-contained trainer built from timm's public functions
(``advbn-aug train``).
"""
