"""Benchmark: m = 1000 surrogate fits, the solver before issue 11 against today's, side by side in one run.

The problem is the one of ``bench_features.py``: n = 20 tasks × N = 2048 rows, d = 400, features
N(0, 1/d) (float32), advantages x·β_i + 0.5·noise with β_i drawn per task, m = 1000 random subsets of
size 4 (916 distinct), λ = 1e-2. The old solver is ``gradex/surrogate.py`` at commit ``--baseline``
(loaded from git, not copied). Old and new are timed alternately (old, new, old, new, ...) for each
torch thread count; the table gives the best and the median. Then accuracy: the fits of both against
each other (max |Δw|, relative ‖Δw‖, objective gap) and against scikit-learn on a few subsets, and the
documented guarantee ‖∇L_S(w)‖ ≤ tol·λ·‖w‖ checked in float64 for every subset. Two more problems are
timed once per solver: ``bench_surrogate.py``'s heterogeneous synthetic tasks and, with
``--features-run DIR``, a run directory's real projected gradients.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fits.py [--threads 1,2] [--repeats 5]
        [--features-run runs/cartpole-10]

Writes ``benchmarks/results/fits.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from policygradex.gradex.surrogate import fit_subsets, logistic_objective
from policygradex.io import write_text
from policygradex.threads import torch_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_surrogate import synthetic_tasks  # noqa: E402

BASELINE = "5e4fd39"
"""The last commit with the Böhning-preconditioned L-BFGS that factors a d×d matrix per subset."""


def load_baseline(commit: str) -> ModuleType:
    """``gradex/surrogate.py`` as it was at ``commit``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{commit}:src/policygradex/gradex/surrogate.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / f"surrogate_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"surrogate_{commit}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def features_problem(
    n: int = 20, rows: int = 2048, d: int = 400, m: int = 1000, size: int = 4
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, ...]]]:
    """bench_features.py's fit problem (same generator calls, same seeds)."""
    gen = torch.Generator().manual_seed(0)
    features = [torch.randn(rows, d, generator=gen) / d**0.5 for _ in range(n)]
    advantages = [
        x @ torch.randn(d, generator=gen) + 0.5 * torch.randn(rows, generator=gen) for x in features
    ]
    rng = np.random.default_rng(0)
    subsets = [tuple(sorted(int(t) for t in rng.choice(n, size, replace=False))) for _ in range(m)]
    return features, advantages, subsets


def pooled(features: Sequence[torch.Tensor], advantages: Sequence[torch.Tensor], subset: Sequence[int]):
    return torch.cat([features[i] for i in subset]).double(), torch.cat(
        [advantages[i] for i in subset]
    ).double()


def relative_gradient(x: torch.Tensor, adv: torch.Tensor, l2: float, w: torch.Tensor) -> float:
    """‖∇L_S(w)‖ / (λ·‖w‖) in float64 (the solvers stop below tol = 1e-6)."""
    w = w.double().clone().requires_grad_(True)
    logistic_objective(x, adv, l2, w).backward()
    assert w.grad is not None
    return float(w.grad.norm() / (l2 * w.detach().norm()))


def sklearn_fit(x: torch.Tensor, adv: torch.Tensor, l2: float) -> torch.Tensor:
    """scikit-learn's weighted logistic regression with C = 1/(λ·Σ|Â|) (the same minimiser)."""
    s = adv.abs().numpy()
    ref = LogisticRegression(
        fit_intercept=False, C=1.0 / (l2 * s.sum()), solver="lbfgs", tol=1e-12, max_iter=100_000
    )
    ref.fit(x.numpy(), np.where(adv.numpy() < 0, -1, 1), sample_weight=s)
    return torch.from_numpy(ref.coef_[0].copy())


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor, float]:
    """(wall-clock s, result, CPU s of this process: all its threads, unaffected by waiting for a core)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, out, time.process_time() - cpu


def accuracy(
    features, advantages, subsets, l2: float, old: torch.Tensor, new: torch.Tensor
) -> dict[str, float]:
    """Old against new on every distinct subset: |Δw|, relative ‖Δw‖, objective gap, gradient bounds."""
    distinct = sorted(set(subsets))
    index = {s: subsets.index(s) for s in distinct}
    out = {"max_abs_dw": 0.0, "max_rel_dw": 0.0, "max_obj_gap": 0.0, "max_rel_obj_gap": 0.0}
    grad_old, grad_new = 0.0, 0.0
    for s in distinct:
        x, a = pooled(features, advantages, s)
        wo, wn = old[index[s]].double(), new[index[s]].double()
        out["max_abs_dw"] = max(out["max_abs_dw"], float((wo - wn).abs().max()))
        out["max_rel_dw"] = max(out["max_rel_dw"], float((wo - wn).norm() / wo.norm()))
        lo, ln = float(logistic_objective(x, a, l2, wo)), float(logistic_objective(x, a, l2, wn))
        out["max_obj_gap"] = max(out["max_obj_gap"], abs(lo - ln))
        out["max_rel_obj_gap"] = max(out["max_rel_obj_gap"], abs(lo - ln) / abs(lo))
        grad_old = max(grad_old, relative_gradient(x, a, l2, wo))
        grad_new = max(grad_new, relative_gradient(x, a, l2, wn))
    out["max_grad_old"], out["max_grad_new"] = grad_old, grad_new
    return out


def versus_sklearn(features, advantages, subsets, l2: float, fits: dict[str, torch.Tensor], count: int):
    """Per solver: max relative ‖w − w_sklearn‖ and max L_S(w) − L_S(w_sklearn) over ``count`` subsets."""
    rows = {name: [0.0, -float("inf")] for name in fits}
    for s in sorted(set(subsets))[:count]:
        x, a = pooled(features, advantages, s)
        ref = sklearn_fit(x, a, l2)
        l_ref = float(logistic_objective(x, a, l2, ref))
        for name, w in fits.items():
            wl = w[subsets.index(s)].double()
            rows[name][0] = max(rows[name][0], float((wl - ref).norm() / ref.norm()))
            rows[name][1] = max(rows[name][1], float(logistic_objective(x, a, l2, wl)) - l_ref)
    return rows


def load_run(run: Path) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    files = sorted((run / "features").glob("task_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    data = [torch.load(f, weights_only=True) for f in files]
    return [t["grads"] for t in data], [t["advantages"] for t in data]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to time")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per solver and thread count")
    ap.add_argument("--baseline", default=BASELINE, help="git commit of the old solver")
    ap.add_argument("--sklearn", type=int, default=3, help="subsets also fitted with scikit-learn")
    ap.add_argument("--features-run", type=Path, default=None, help="a run directory with real features/")
    ap.add_argument("--note", default="", help="what else ran on the machine (goes into the table)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fits.md"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    old_module = load_baseline(args.baseline)
    solvers: dict[str, Callable[..., torch.Tensor]] = {"old": old_module.fit_subsets, "new": fit_subsets}
    l2 = 1e-2
    features, advantages, subsets = features_problem()
    load_before = os.getloadavg()

    times: dict[tuple[str, int], list[float]] = {}
    cpu_times: dict[tuple[str, int], list[float]] = {}
    fits: dict[str, torch.Tensor] = {}
    for t in threads:
        with torch_threads(t):
            for fit in solvers.values():  # warm-up: thread pools, kernels
                fit(features, advantages, subsets[:2], l2)
            for _ in range(args.repeats):
                for name, fit in solvers.items():
                    seconds, w, cpu_seconds = timed(partial(fit, features, advantages, subsets, l2))
                    times.setdefault((name, t), []).append(seconds)
                    cpu_times.setdefault((name, t), []).append(cpu_seconds)
                    fits.setdefault(name, w)
    load_after_timing = os.getloadavg()

    acc = accuracy(features, advantages, subsets, l2, fits["old"], fits["new"])
    sk = versus_sklearn(features, advantages, subsets, l2, fits, args.sklearn)

    # Other problems, one timed run per solver (1 thread): the fit must not be tuned to one data set.
    extra = []
    syn_x, syn_a = synthetic_tasks(10, 2048, 400, 1.0, 0)
    rng = np.random.default_rng(0)
    syn_subsets = [tuple(sorted(int(t) for t in rng.choice(10, 4, replace=False))) for _ in range(300)]
    problems = [("bench_surrogate synthetic, n = 10, 300 subsets of size 4", syn_x, syn_a, syn_subsets)]
    if args.features_run is not None:
        run_x, run_a = load_run(args.features_run)
        run_subsets = list(itertools.combinations(range(len(run_x)), 4))
        problems.append(
            (
                f"real features of `{args.features_run.name}`, n = {len(run_x)}, {len(run_subsets)} subsets of size 4",
                run_x,
                run_a,
                run_subsets,
            )
        )
    for label, px, pa, ps in problems:
        for lam in (1e-2, 1e-3):
            with torch_threads(1):
                t_old, w_old, _ = timed(partial(solvers["old"], px, pa, ps, lam))
                t_new, w_new, _ = timed(partial(solvers["new"], px, pa, ps, lam))
            a = accuracy(px, pa, ps, lam, w_old, w_new)
            extra.append((label, lam, t_old, t_new, a))
    load_after = os.getloadavg()

    cpu = platform.processor() or platform.machine()
    lines = [
        "# Surrogate fits: the solver before issue 11 against today's",
        "",
        f"Produced by `PYTHONPATH=src .venv/bin/python benchmarks/bench_fits.py --threads {args.threads} "
        f"--repeats {args.repeats}"
        + (f" --features-run {args.features_run}" if args.features_run else "")
        + "` "
        f"({cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}). "
        f"Old: `gradex/surrogate.py` at {args.baseline} (Böhning-preconditioned L-BFGS, one d×d Cholesky and "
        "inverse per subset). New: the same L-BFGS with H_S⁻¹ applied by conjugate gradients on per-task Gram "
        "matrices (no d×d factorisation per subset) and the first gradient from per-task sums.",
        "",
        f"Problem (as in `bench_features.py`): n = 20 tasks × 2048 rows, d = 400, λ = {l2:g}, m = {len(subsets)} "
        f"random subsets of size 4 ({len(set(subsets))} distinct), tol = 1e-6, seeds 0. Timed alternately "
        f"(old, new, ...), {args.repeats} runs each per thread count, after one warm-up call each.",
        "",
        f"Machine load (1/5/15-min load average): {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f} "
        f"before, {load_after_timing[0]:.2f}/{load_after_timing[1]:.2f}/{load_after_timing[2]:.2f} after the "
        "timing." + (f" {args.note}" if args.note else ""),
        "",
        "| torch threads | old best s | old median s | new best s | new median s | speed-up (best) "
        "| speed-up (median) | CPU s old / new (median) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in threads:
        o, n_ = times[("old", t)], times[("new", t)]
        co, cn = statistics.median(cpu_times[("old", t)]), statistics.median(cpu_times[("new", t)])
        lines.append(
            f"| {t} | {min(o):.2f} | {statistics.median(o):.2f} | **{min(n_):.2f}** | {statistics.median(n_):.2f} "
            f"| {min(o) / min(n_):.1f}× | {statistics.median(o) / statistics.median(n_):.1f}× | {co:.2f} / {cn:.2f} |"
        )
    lines += [
        "",
        "All runs (s): "
        + "; ".join(
            f"{name} × {t} thread(s): " + ", ".join(f"{s:.2f}" for s in times[(name, t)])
            for t in threads
            for name in solvers
        ),
        "",
        "## Same solutions",
        "",
        f"Over the {len(set(subsets))} distinct subsets: max |Δw| (entrywise) = {acc['max_abs_dw']:.1e}, "
        f"max ‖w_new − w_old‖/‖w_old‖ = {acc['max_rel_dw']:.1e}; objective gap max |L_S(w_new) − L_S(w_old)| = "
        f"{acc['max_obj_gap']:.1e} (relative {acc['max_rel_obj_gap']:.1e}). Documented guarantee "
        f"‖∇L_S(w)‖ ≤ 1e-6·λ·‖w‖, checked with autograd in float64: max ‖∇L_S‖/(λ‖w‖) = {acc['max_grad_old']:.1e} "
        f"(old), {acc['max_grad_new']:.1e} (new).",
        "",
        f"Against scikit-learn (`LogisticRegression(fit_intercept=False, C=1/(λ·Σ|Â|), tol=1e-12)`) on the first "
        f"{args.sklearn} distinct subsets:",
        "",
        "| solver | max ‖w − w_sklearn‖/‖w_sklearn‖ | max L_S(w) − L_S(w_sklearn) |",
        "|---|---:|---:|",
    ]
    for name, (rel, gap) in sk.items():
        lines.append(f"| {name} | {rel:.1e} | {gap:.1e} |")
    lines += [
        "",
        "## Other problems (1 thread, one run per solver)",
        "",
        "| problem | λ | old s | new s | speed-up | max ‖Δw‖/‖w_old‖ | max objective gap | max ‖∇L‖/(λ‖w‖) old / new |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, lam, t_old, t_new, a in extra:
        lines.append(
            f"| {label} | {lam:g} | {t_old:.2f} | {t_new:.2f} | {t_old / t_new:.1f}× | {a['max_rel_dw']:.1e} "
            f"| {a['max_obj_gap']:.1e} | {a['max_grad_old']:.1e} / {a['max_grad_new']:.1e} |"
        )
    lines += [
        "",
        f"Load average at the end: {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}.",
        "",
    ]
    write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
