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
    P = T / np.maximum(n, 1)[..., None]
    rb = R / np.maximum(n, 1)
    z = tp.centers
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    h2 = np.median(d2.min(1))
    W = np.exp(-d2 / h2)
    nn = np.einsum("ij,ja->ia", W, n)
    TN = np.einsum("ij,jax->iax", W, T)
    RN = np.einsum("ij,ja->ia", W, R)
    Q = TN / np.maximum(nn, 1e-12)[..., None]
    rq = RN / np.maximum(nn, 1e-12)
    w = np.where(nn > 0, 2.0, 0.0)
    Ps = (T + w[..., None] * Q) / np.maximum(n + w, 1e-12)[..., None]
    rs = (R + w * rq) / np.maximum(n + w, 1e-12)
    allowed = n >= 5
    none = ~allowed.any(1)
    allowed[none, n[none].argmax(1)] = True
    init = np.where(allowed, n, -1).argmax(1)
    for g, cc in itertools.product([0.99, 0.999, 0.9999], [0.01, 0.02, 0.03, 0.05]):
        pen = cc / np.sqrt(np.maximum(n, 1))
        res.setdefault((f"count g{g} c{cc}", E), []).append(
            value(tp, solve(P[..., :k], rb, allowed, pen, gamma=g, init=init))
        )
        res.setdefault((f"snbr g{g} c{cc}", E), []).append(
            value(
                tp,
                solve(
                    Ps[..., :k],
                    rs,
                    allowed,
                    cc / np.sqrt(np.maximum(n + np.minimum(nn, 2), 1)),
                    gamma=g,
                    init=init,
                ),
            )
        )
    print(E, seed, "done", flush=True)
for (name, E), vals in sorted(res.items(), key=lambda t: (t[0][1], -np.mean(t[1]))):
    print(E, name, round(np.mean(vals), 4), [round(v, 4) for v in vals])
