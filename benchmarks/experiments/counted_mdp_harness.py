"""Counted-MDP harness (issue 10): the counting reference and smoothing variants, solved directly in numpy.

Run from the repository root: `python benchmarks/experiments/counted_mdp_harness.py` (state-neighbour Dirichlet
prior; output in benchmarks/results/counted_state_neighbour.txt). The sibling scripts import its helpers:
counted_gamma_penalty.py, counted_state_prior.py, counted_bernstein.py (outputs: results/counted_*.txt).
Numbers are exact true values on ICU-Sepsis; the tables are in docs/decisions.md §4-5.
"""

import itertools

import numpy as np

from sepsis_sdk.policies.tabular import fit_tabular_policy
from sepsis_sdk.sources.icu_sepsis import N_CLINICAL, load_mdp, sample_cohort
from sepsis_sdk.truth import true_value

obs_states = load_mdp().observation(np.arange(N_CLINICAL))


def counted(c):
    tp = fit_tabular_policy(c)
    fill = tp.fill
    x = np.where(c.masks(), c.features(), np.nan)
    x = np.where(np.isfinite(x), x, fill[None])
    s = tp.clusters(x)
    k = tp.n_clusters
    a = c.actions
    r = c.data["reward"].to_numpy(float)
    done = c.data["done"].to_numpy(bool)
    sn = np.where(done, k, np.r_[s[1:], 0])
    n = np.zeros((k, 25))
    np.add.at(n, (s, a), 1)
    T = np.zeros((k, 25, k + 1))
    np.add.at(T, (s, a, sn), 1)
    R = np.zeros((k, 25))
    np.add.at(R, (s, a), r)
    return tp, n, T, R


def solve(p, rbar, allowed, pen, gamma=0.99, iters=200, init=None):
    k = p.shape[0]
    rb = rbar - pen
    pol = init if init is not None else np.where(allowed, 0, -1).argmax(1)
    for _ in range(iters):
        v = np.linalg.solve(np.eye(k) - gamma * p[np.arange(k), pol], rb[np.arange(k), pol])
        q = np.where(allowed, rb + gamma * p @ v, -np.inf)
        new = q.argmax(1)
        keep = q[np.arange(k), pol] >= q[np.arange(k), new] - 1e-9
        new = np.where(keep, pol, new)
        if np.array_equal(new, pol):
            break
        pol = new
    return pol


def value(tp, pol):
    return true_value(pol[tp.clusters(np.asarray(obs_states, float))])


def variants(tp, n, T, R):
    k = n.shape[0]
    P = T / np.maximum(n, 1)[..., None]
    rb = R / np.maximum(n, 1)
    out = {}
    # baseline counting
    for c0, m in [(0.05, 5)]:
        allowed = n >= m
        none = ~allowed.any(1)
        allowed[none, n[none].argmax(1)] = True
        out[f"count c{c0} m{m}"] = solve(
            P[..., :k], rb, allowed, c0 / np.sqrt(np.maximum(n, 1)), init=np.where(allowed, n, -1).argmax(1)
        )
    # state-neighbour kernel prior (same action), Dirichlet alpha
    z = tp.centers
    d2 = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    h2 = np.median(d2.min(1))
    for hm, alpha, c0, m in itertools.product([1.0, 2.0], [2.0, 5.0], [0.05], [3, 5]):
        W = np.exp(-d2 / (hm * h2))  # (k,k)
        # neighbour counts per (s,a): sum_j W_sj n_ja ; neighbour transition mass of next = sum_j W_sj T_ja
        nn = np.einsum("ij,ja->ia", W, n)
        TN = np.einsum("ij,jax->iax", W, T)
        RN = np.einsum("ij,ja->ia", W, R)
        Q = TN / np.maximum(nn, 1e-12)[..., None]
        rq = RN / np.maximum(nn, 1e-12)
        w = np.where(nn > 0, alpha, 0.0)
        Ps = (T + w[..., None] * Q) / np.maximum(n + w, 1e-12)[..., None]
        rs = (R + w * rq) / np.maximum(n + w, 1e-12)
        neff = n + np.minimum(nn, alpha)
        allowed = n >= m
        none = ~allowed.any(1)
        allowed[none, n[none].argmax(1)] = True
        out[f"snbr h{hm} a{alpha} c{c0} m{m}"] = solve(
            Ps[..., :k],
            rs,
            allowed,
            c0 / np.sqrt(np.maximum(neff, 1)),
            init=np.where(allowed, n, -1).argmax(1),
        )
    return out


if __name__ == "__main__":
    for E, seed in [(5000, 0), (5000, 1), (5000, 2), (20000, 0)]:
        c = sample_cohort(E, seed=seed)
        tp, n, T, R = counted(c)
        for name, pol in variants(tp, n, T, R).items():
            print(E, seed, name, round(value(tp, pol), 4), flush=True)
