"""Back-fill the set identities of runs evaluated on this machine on 2026-12-07 (code a353342 or ffd035a, before the
sets' hashes were recorded): their Stylized-CIFAR-10 entries read the cached sets generated here at 03:37 (whose
sha256 the full recipe pins: RecipeConfig.stylized_sha256), their decoded entries the decoder cache made here at 03:45
(recipes/cifar10/runs/_cache/decoded-59c62c0d7ff5). Entries moved by hand under extras_on_other_sets go back to
extras: the table now keeps each set apart by its recorded hash.

    python recipes/cifar10/backfill_set_ids.py recipes/cifar10/runs/_cache/decoded-59c62c0d7ff5 \
        recipes/cifar10/results/runs recipes/cifar10/runs
"""
import glob
import json
import sys

import numpy as np

from advbn_aug.eval.fingerprint import parts_sha256
from advbn_aug.recipe.cifar10.config import FULL
from advbn_aug.recipe.cifar10.decoded import VARIANTS, set_identity

SESSION = ("a353342", "ffd035a")
STY = {f"{float(k):g}": v for k, v in dict(FULL.stylized_sha256).items()}
STY_ID = {"sha256": STY, "set_sha256": parts_sha256(STY)}
cache = sys.argv[1]
DEC_ID = set_identity({v: (z["x"], z["y"]) for v in VARIANTS for z in [np.load(f"{cache}/{v}/test_lossless1000.npz")]})
print("stylized", STY_ID["set_sha256"][:12], "decoded", DEC_ID["set_sha256"][:12])
for root in sys.argv[2:]:
    for f in sorted(glob.glob(f"{root}/*/seed*/result.json")):
        r = json.load(open(f))
        other = r.get("extras_on_other_sets", {})
        ex = r.setdefault("extras", {})
        changed = []
        for name, ident in (("stylized", STY_ID), ("decoded", DEC_ID)):
            e = other.get(name) or ex.get(name)
            if not e or "set_sha256" in e or not str((e.get("code") or {}).get("commit", "")).startswith(SESSION):
                continue
            other.pop(name, None)
            ex[name] = {**e, **ident, "set_backfilled": "2026-12-07: recorded after the run (backfill_set_ids.py)"}
            changed.append(name)
        if other and set(other) == {"note"}:
            r.pop("extras_on_other_sets")
        if changed:
            json.dump(r, open(f, "w"), indent=1)
            print("backfilled", changed, f)
