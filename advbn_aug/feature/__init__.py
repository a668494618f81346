"""Hook-attached feature augmenters: AdvBN (:mod:`.advbn`, options in :mod:`.config`, the attack in :mod:`.attack`
and :mod:`.attacker`, the cached feature in :mod:`.capture`, dual norms in :mod:`.dual_norm`) and the stochastic
peers MixStyle and DSU on :class:`~advbn_aug.feature.base.StatsAugmenter`. They attach to a model by layer name
(forward hooks, :mod:`.hooks`) and detach leaving it as it was. Import them from ``advbn_aug``."""
