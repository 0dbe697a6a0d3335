import itertools
import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from counted_mdp_harness import counted, solve, value

from sepsis_sdk.sources.icu_sepsis import sample_cohort

res = {}
for E, seed in [(5000, 0), (5000, 1), (5000, 2), (20000, 0), (20000, 1), (20000, 2)]:
    c = sample_cohort(E, seed=seed)
    tp, n, T, R = counted(c)
    k = n.shape[0]
    ns = n.sum(1)
    Ps = T.sum(1) / np.maximum(ns, 1)[:, None]
    rs = R.sum(1) / np.maximum(ns, 1)
    for alpha, m, cc in itertools.product([0.0, 1.0, 3.0, 10.0], [2, 3, 5], [0.03, 0.05]):
        P = (T + alpha * Ps[:, None, :]) / (n + alpha)[..., None].clip(1e-12)
        rb = (R + alpha * rs[:, None]) / (n + alpha).clip(1e-12)
        allowed = n >= m
        none = ~allowed.any(1)
        allowed[none, n[none].argmax(1)] = True
        pen = cc / np.sqrt(np.maximum(n + alpha, 1))
        pol = solve(P[..., :k], rb, allowed, pen, gamma=0.999, init=np.where(allowed, n, -1).argmax(1))
        res.setdefault((f"a{alpha} m{m} c{cc}", E), []).append(value(tp, pol))
    print(E, seed, "done", flush=True)
for (name, E), vals in sorted(res.items(), key=lambda t: (t[0][1], -np.mean(t[1]))):
    print(E, name, round(np.mean(vals), 4), [round(v, 4) for v in vals])
