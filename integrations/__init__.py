"""Integrations of ``advbn_aug`` with training frameworks, installed as ``advbn_aug.integrations``.

``advbn_aug.integrations.timm``: ``settings`` (the ``--advbn-*`` argument group), ``task`` (``AdvBNTask``),
``launcher`` (a timm checkout's ``train.py`` with AdvBN: ``advbn-aug timm-train``) and ``trainer`` (a self-contained
trainer built from timm's public functions: ``advbn-aug train``).
"""
