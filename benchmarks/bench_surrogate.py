"""Benchmark the batched surrogate fits (paper §2.3) against a per-subset loop of ``fit_logistic``.

Synthetic features stand in for projected gradients: every task has its own feature covariance and
its advantages depend on a task-cluster direction plus noise, so the fits are neither trivial nor
separable. Prints one Markdown table row (with the header when --header is given).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_surrogate.py``
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from policygradex.gradex.surrogate import fit_logistic, fit_subsets


def synthetic_tasks(
    n: int, rows: int, d: int, signal: float, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-task features ``[rows, d]`` (float32) and advantages ``[rows]`` with planted task clusters."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, d, generator=gen, dtype=torch.float64)
    features, advantages = [], []
    for i in range(n):
        scales = torch.exp(0.5 * torch.randn(d, generator=gen, dtype=torch.float64))
        x = torch.randn(rows, d, generator=gen, dtype=torch.float64) * scales / math.sqrt(d)
        beta = centres[i % 3] + 0.3 * torch.randn(d, generator=gen, dtype=torch.float64)
        z = x @ beta
        adv = signal * z / z.std() + torch.randn(rows, generator=gen, dtype=torch.float64)
        features.append(x.float())
        advantages.append(adv.float())
    return features, advantages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="number of tasks")
    parser.add_argument("--rows", type=int, default=2048, help="rows (transitions) per task, N")
    parser.add_argument("--d", type=int, default=400, help="projection dimension")
    parser.add_argument("--m", type=int, default=1000, help="number of subsets")
    parser.add_argument("--size", type=int, default=4, help="tasks per subset")
    parser.add_argument("--l2", type=float, default=0.1, help="ridge strength λ")
    parser.add_argument("--signal", type=float, default=1.0, help="advantage signal-to-noise ratio")
    parser.add_argument(
        "--naive", type=int, default=50, help="subsets fitted by the per-subset loop (0: skip)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--header", action="store_true", help="print the table header first")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    features, advantages = synthetic_tasks(args.n, args.rows, args.d, args.signal, args.seed)
    rng = np.random.default_rng(args.seed)
    subsets = [sorted(rng.choice(args.n, size=args.size, replace=False).tolist()) for _ in range(args.m)]
    unique = len({tuple(s) for s in subsets})

    fit_subsets(features, advantages, subsets[:2], args.l2)  # warm-up (thread pools, kernels)
    start = time.perf_counter()
    batched = fit_subsets(features, advantages, subsets, args.l2)
    batched_s = time.perf_counter() - start

    naive_cell, err_cell = "–", "–"
    if args.naive > 0:
        count = min(args.naive, args.m)
        start = time.perf_counter()
        worst = 0.0
        for row in range(count):
            x = torch.cat([features[i] for i in subsets[row]]).double()
            a = torch.cat([advantages[i] for i in subsets[row]])
            w = fit_logistic(x, a, args.l2)
            worst = max(worst, float((batched[row].double() - w.double()).norm() / w.double().norm()))
        per_fit = (time.perf_counter() - start) / count
        naive_cell = f"{per_fit * args.m:.2f} (measured {count}, extrapolated)"
        err_cell = f"{worst:.1e}"

    if args.header:
        print(
            "| m | unique | n | N | d | size | λ | threads | fit_subsets s | fit_logistic loop s | max rel. diff |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.m} | {unique} | {args.n} | {args.rows} | {args.d} | {args.size} | {args.l2:g} | "
        f"{torch.get_num_threads()} | {batched_s:.2f} | {naive_cell} | {err_cell} |"
    )


if __name__ == "__main__":
    main()
