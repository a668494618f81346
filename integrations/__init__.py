"""Integrations of ``advbn_aug`` with training frameworks.

``integrations.advbn_timm``: the timm pieces (``AdvBNTask``, the ``--advbn-*`` argument group);
``integrations.timm_train``: launcher for a timm checkout's ``train.py``;
``integrations.timm_trainer``: a self-contained trainer built from timm's public functions.
"""
