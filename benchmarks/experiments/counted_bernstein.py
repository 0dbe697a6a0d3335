import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from counted_mdp_harness import counted, solve, value

from sepsis_sdk.sources.icu_sepsis import sample_cohort


def solve_b(P, rb, allowed, n, c, gamma=0.99, iters=100, cnt_c=0.0, rmax=1.0):
    """PI where the penalty is c * sd(r + gamma V(s')) / sqrt(n) (+ cnt_c/sqrt(n)), recomputed."""
    k = P.shape[0]
    Pn = P[..., :k]
    pol = np.where(allowed, n, -1).argmax(1)
    v = np.zeros(k)
    sq = np.sqrt(np.maximum(n, 1))
    for it in range(iters):
        # variance of the one-step target under the counted law: terminal value 0, reward on transition
        ev = Pn @ v
        ev2 = Pn @ (v**2)
        # reward r is 1 on discharge transitions; approximate variance of (r + g v')
        var = np.maximum(ev2 * gamma**2 - (gamma * ev) ** 2, 0) + np.maximum(rb - rb**2, 0)
        pen = c * np.sqrt(var) / sq + cnt_c / sq
        rr = rb - pen
        v = np.linalg.solve(np.eye(k) - gamma * Pn[np.arange(k), pol], rr[np.arange(k), pol])
        q = np.where(allowed, rr + gamma * Pn @ v, -np.inf)
        new = q.argmax(1)
        keep = q[np.arange(k), pol] >= q[np.arange(k), new] - 1e-9
        new = np.where(keep, pol, new)
        if np.array_equal(new, pol) and it > 3:
            break
        pol = new
    return pol


res = {}
for E, seed in [(5000, 0), (5000, 1), (5000, 2), (20000, 0), (20000, 1), (20000, 2)]:
    c = sample_cohort(E, seed=seed)
    tp, n, T, R = counted(c)
    k = n.shape[0]
    P = T / np.maximum(n, 1)[..., None]
    rb = R / np.maximum(n, 1)
    for m in [3, 5, 8]:
        allowed = n >= m
        none = ~allowed.any(1)
        allowed[none, n[none].argmax(1)] = True
        for cc in [0.03, 0.05, 0.08]:
            pol = solve(
                P[..., :k],
                rb,
                allowed,
                cc / np.sqrt(np.maximum(n, 1)),
                init=np.where(allowed, n, -1).argmax(1),
            )
            res.setdefault((f"count c{cc} m{m}", E), []).append(value(tp, pol))
        for cb in [0.5, 1.0, 2.0]:
            pol = solve_b(P, rb, allowed, n, cb)
            res.setdefault((f"bern c{cb} m{m}", E), []).append(value(tp, pol))
    print(E, seed, "done", flush=True)
for (name, E), vals in sorted(res.items(), key=lambda t: (t[0][1], -np.mean(t[1]))):
    print(E, name, round(np.mean(vals), 4), [round(v, 4) for v in vals])
