"""AdvBN in timm: :mod:`.settings` (the ``--advbn-*`` flags), :mod:`.task` (``AdvBNTask``), :mod:`.launcher`
(``advbn-aug timm-train``: your checkout's ``train.py``), :mod:`.trainer` (``advbn-aug train``)."""
