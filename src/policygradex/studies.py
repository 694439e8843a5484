"""Does the estimate hold? Studies on a finished run directory (issue #4).

* :func:`approx_error` — first-order approximation error of log π around θ* along the surrogate's Δθ
  directions, on held-out transitions (``approx_error.json/.md``, ``figures/approx_error.png``).
* :func:`ground_truth` — actually fine-tune θ* with PPO on every subset and score f(S, i) exactly as the
  estimate is scored (``ground_truth/``): the expensive baseline, resumable subset by subset.
* :func:`agreement` — rank/linear correlation of estimated vs true f(S, i), NMI of the clusterings
  (random partitions beside it), and the compute-time speed-up (``agreement.json``).
* :func:`compare_groupings` — the estimated grouping vs random and gradient-similarity grouping, each
  followed by the same group training (``groupings.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex.analysis.approx import DEFAULT_DISTANCES, approximation_errors
from policygradex.errors import ConfigError
from policygradex.execute import make_executor
from policygradex.gradex.subsets import first_occurrences
from policygradex.io import atomic_path, read_json, write_json, write_npy, write_text
from policygradex.pipeline import Run
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.policy import log_prob
from policygradex.rl.ppo import PPOConfig
from policygradex.rundir import open_run_dir


# ---- approximation error -----------------------------------------------------------------------------
def approx_error(run: Run, directions: int = 20, distances: Sequence[float] = DEFAULT_DISTANCES) -> dict[str, Any]:
    """Relative error of log π_θ*(a|s) + g̃ᵀw against the true log π_{θ*+Δθ}(a|s) on held-out transitions.

    Directions are the fitted Δθ_S = P·w_S of the first ``directions`` distinct subsets; held-out
    transitions are fresh rollouts of θ* (a seed the features did not use), as many per task as the features.
    """
    from policygradex.gradex.features import collect_features, flatten, unflatten
    from policygradex.gradex.projection import GaussianProjection

    if directions < 1:
        raise ConfigError(f"directions={directions} must be at least 1")
    ckpt = load_checkpoint(run._require(run.meta_checkpoint, "meta"), run.family)
    pj = read_json(run._require(run.dir / "features" / "projection.json", "features"))
    proj = GaussianProjection(p=pj["p"], d=pj["d"], seed=pj["seed"])
    weights = torch.load(run._require(run.dir / "estimate" / "weights.pt", "estimate"), weights_only=True).float()
    first = sorted(first_occurrences(run.load_subsets()).values())[:directions]
    W = weights[first]  # [K, d]
    lifted = proj.lift(W)  # [K, p]
    lnorm = lifted.norm(dim=1).clamp_min(1e-12)
    units = lifted / lnorm[:, None]
    ppo = run.meta_ppo
    held = collect_features(
        ckpt.policy, run.family, proj, run.config["features"]["samples_per_task"], run._seed("features") + 1000,
        envs_per_task=run.config["features"]["envs_per_task"], gamma=ppo.gamma, lam=ppo.gae_lambda,
    )
    params = ckpt.policy.actor_params()
    theta = flatten(params)
    per_task = []
    for i in range(run.family.n):
        f = held[i]

        def logp_at(th: torch.Tensor, f=f) -> torch.Tensor:
            with torch.no_grad():
                return log_prob(ckpt.policy.actor, unflatten(th, params), f.obs, f.actions)

        dg = (f.grads @ W.T).T / lnorm[:, None]  # [K, N]: g_tᵀu_k = g̃_tᵀw_k / ‖P w_k‖
        per_task.append(approximation_errors(logp_at, theta, logp_at(theta), dg, units, distances))
    table = []
    for j, r in enumerate(distances):
        table.append({
            "distance": r,
            "first_order": float(np.mean([t[j].first_order for t in per_task])),
            "zeroth_order": float(np.mean([t[j].zeroth_order for t in per_task])),
            "first_order_worst_task": float(np.max([t[j].first_order for t in per_task])),
        })
    out = {"family": run.family.full_name, "directions": len(first), "tasks": run.family.n,
           "samples_per_task": int(run.config["features"]["samples_per_task"]), "errors": table}
    write_json(run.dir / "approx_error.json", out)
    lines = [
        f"# First-order approximation error: {run.family.full_name}",
        "",
        f"Relative error ‖pred − true‖₁/‖true‖₁ of log π on held-out transitions of θ* ({out['samples_per_task']} per task), "
        f"mean over {run.family.n} tasks × {len(first)} surrogate directions Δθ_S = P·w_S rescaled to each distance.",
        "",
        "| ‖Δθ‖/‖θ*‖ | first order (mean) | first order (worst task) | zeroth order (mean) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {t['distance']:.1%} | {t['first_order']:.3%} | {t['first_order_worst_task']:.3%} | {t['zeroth_order']:.3%} |" for t in table]
    write_text(run.dir / "approx_error.md", "\n".join(lines) + "\n")
    _plot_approx(run.dir / "figures" / "approx_error.png", table, run.family.full_name)
    return out


def _plot_approx(path: Path, table: list[dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [100 * t["distance"] for t in table]
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    ax.plot(x, [100 * t["first_order"] for t in table], "o-", label="first order")
    ax.plot(x, [100 * t["zeroth_order"] for t in table], "s--", label="zeroth order")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("‖Δθ‖ / ‖θ*‖ (%)")
    ax.set_ylabel("relative error of log π (%)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# ---- ground truth by full training -------------------------------------------------------------------
@dataclass(frozen=True)
class TruthJob:
    """Fine-tune θ* on one subset and score it (picklable)."""

    checkpoint: str
    family: str
    index: int
    tasks: tuple[int, ...]
    ppo: dict[str, Any]
    seed: int
    score_seed: int
    episodes: int
    out: str


def fine_tune_and_score(job: TruthJob) -> str:
    """Fine-tune θ* on ``job.tasks`` with PPO, then score each task as the estimate does; writes ``job.out``."""
    from policygradex import tasks
    from policygradex.gradex.features import flatten
    from policygradex.gradex.scores import ScoreJob, score_rollouts
    from policygradex.rl.ppo import train

    start = time.perf_counter()
    family = tasks.make(job.family)
    ckpt = load_checkpoint(job.checkpoint, family)
    res = train(family, job.tasks, PPOConfig(**job.ppo), job.seed, init=ckpt.policy)
    delta = flatten(res.policy.actor_params()) - flatten(ckpt.policy.actor_params())
    # Scored through the same function as the estimate: π at θ* + Δθ, same task seeds, same episodes.
    scored = score_rollouts(ScoreJob(job.checkpoint, job.family, ((job.index, job.tasks),), delta.numpy()[None], job.episodes, job.score_seed))
    write_json(job.out, {
        "index": job.index, "tasks": list(job.tasks), "rows": scored["rows"], "env_steps": res.env_steps,
        "seconds": time.perf_counter() - start, "relative_distance": float(delta.norm() / flatten(ckpt.policy.actor_params()).norm()),
    })
    return job.out


def ground_truth(run: Run, total_steps: int | None = None, executor: str | None = None, workers: int | None = None,
                 progress: Any = None) -> dict[str, Any]:
    """Fine-tune θ* on every distinct subset and build the true affinity and clustering (``ground_truth/``).

    Args:
        run: a run whose estimate stage is done.
        total_steps: PPO env steps per subset (default: the meta budget × |S| / n, as for group policies).
        executor, workers: override the run's executor.
        progress: ``progress(stage, done, total)``.
    """
    from policygradex.gradex.affinity import affinity

    subsets = run.load_subsets()
    first = first_occurrences(subsets)
    gc = run.config["groups"]
    cfg = {
        "command": "ground-truth",
        "total_steps": total_steps,
        "lr_scale": gc["lr_scale"],
        "score_episodes": int(run.config["estimate"]["episodes"]),
    }
    gt = open_run_dir(run.dir / "ground_truth", cfg)
    meta = run.meta_ppo
    jobs = []
    for s, l in sorted(first.items(), key=lambda kv: kv[1]):
        steps = total_steps or max(meta.batch_size(len(s)), meta.total_steps * len(s) // run.family.n)
        ppo = replace(meta, total_steps=int(steps), learning_rate=meta.learning_rate * gc["lr_scale"])
        out = gt / "subsets" / f"subset_{l:05d}.json"
        if out.exists():
            continue
        jobs.append(TruthJob(
            str(run.meta_checkpoint), run.family.name, l, s, asdict(ppo),
            int(np.random.SeedSequence([run.seed, 4242, l]).generate_state(1)[0] % (2**31)),
            run._seed("estimate"), int(run.config["estimate"]["episodes"]), str(out),
        ))
    ex = make_executor(executor or run.config["executor"], workers or run.config["workers"])
    total = len(first)
    done = total - len(jobs)
    if progress:
        progress("ground-truth", done, total)
    for _ in ex.map(fine_tune_and_score, jobs):
        done += 1
        if progress:
            progress("ground-truth", done, total)
    scored: dict[tuple[int, int], float] = {}
    seconds, steps_total = 0.0, 0
    for l in first.values():
        rec = read_json(gt / "subsets" / f"subset_{l:05d}.json")
        seconds += rec["seconds"]
        steps_total += rec["env_steps"]
        for a, b, v in rec["rows"]:
            scored[(int(a), int(b))] = float(v)
    rows = [(l, i, scored[(first[s], i)]) for l, s in enumerate(subsets) for i in s]
    write_text(gt / "scores.jsonl", "".join(json.dumps({"subset": l, "task": i, "score": v, "mode": "fine-tuned"}) + "\n" for l, i, v in rows))
    scores, membership = run.load_scores(gt / "scores.jsonl")
    U, cov = affinity(scores, membership, run.config["estimate"]["affinity"])
    write_npy(gt / "affinity.npy", U)
    write_npy(gt / "coverage.npy", cov)
    res = _cluster(run, U)
    summary = {"groups": res.groups, "method": run.config["method"], "k": int(run.config["k"]), "objective": float(res.objective),
               "compute_seconds": seconds, "env_steps": steps_total, "distinct_subsets": len(first)}
    write_json(gt / "groups.json", summary)
    return summary


def _cluster(run: Run, U: np.ndarray):  # type: ignore[no-untyped-def]
    from policygradex.grouping.cluster import exhaustive_cluster, sdp_cluster, spectral_cluster

    k, method = int(run.config["k"]), run.config["method"]
    if method == "sdp":
        return sdp_cluster(U, k=k)
    if method == "spectral":
        return spectral_cluster(U, k, seed=run.seed)
    return exhaustive_cluster(U, k)


# ---- agreement ---------------------------------------------------------------------------------------
def labels(groups: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Partition → label per task. [n] int."""
    out = np.full(n, -1)
    for g, members in enumerate(groups):
        out[list(members)] = g
    if (out < 0).any():
        raise ConfigError(f"partition {groups} does not cover all {n} tasks")
    return out


def nmi(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]], n: int) -> float:
    """Normalised mutual information of two partitions of n tasks (1 = identical up to relabelling)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(labels(a, n), labels(b, n)))


def random_nmi(truth: Sequence[Sequence[int]], n: int, k: int, seeds: int = 200) -> float:
    """Mean NMI of uniformly random partitions into k groups against ``truth``."""
    from policygradex.grouping.baselines import random_partition

    return float(np.mean([nmi(random_partition(n, k, s), truth, n) for s in range(seeds)]))


def agreement(run: Run) -> dict[str, Any]:
    """Compare the estimate with the ground truth; writes ``agreement.json``."""
    from scipy.stats import pearsonr, spearmanr

    est_scores, _ = run.load_scores()
    gt_dir = run._require(run.dir / "ground_truth" / "groups.json", "ground-truth").parent
    true_scores, _ = run.load_scores(gt_dir / "scores.jsonl")
    # distinct (subset, task) pairs only: repeated subsets would count the same pair twice
    seen: set[tuple[tuple[int, ...], int]] = set()
    est, tru, task = [], [], []
    for l, s in enumerate(run.load_subsets()):
        for i in s:
            if (s, i) not in seen:
                seen.add((s, i))
                est.append(est_scores[l, i])
                tru.append(true_scores[l, i])
                task.append(i)
    est_a, tru_a, task_of = np.array(est), np.array(tru), np.array(task)
    n = run.family.n
    est_groups, gt = run.load_groups(), read_json(gt_dir / "groups.json")
    ests = run.estimate_compute_seconds()
    out = {
        "pairs": len(est),
        "spearman": _safe(spearmanr, est_a, tru_a),
        "pearson": _safe(pearsonr, est_a, tru_a),
        # per-task centring removes each task's own level, which estimate and truth share trivially
        "spearman_within_task": _safe(spearmanr, _centre(est_a, task_of), _centre(tru_a, task_of)),
        "nmi": nmi(est_groups, gt["groups"], n),
        "nmi_random": random_nmi(gt["groups"], n, int(run.config["k"])),
        "estimated_groups": est_groups,
        "true_groups": gt["groups"],
        "estimate_compute_seconds": ests,
        "ground_truth_compute_seconds": gt["compute_seconds"],
        "speedup": gt["compute_seconds"] / max(ests["total"], 1e-9),
        "score_mode": run.config["estimate"]["score"],
    }
    if run.family.planted_groups:
        out["nmi_estimate_vs_planted"] = nmi(est_groups, run.family.planted_groups, n)
        out["nmi_truth_vs_planted"] = nmi(gt["groups"], run.family.planted_groups, n)
    write_json(run.dir / "agreement.json", out)
    return out


def _centre(x: np.ndarray, task: np.ndarray) -> np.ndarray:
    out = x.astype(float).copy()
    for t in np.unique(task):
        out[task == t] -= out[task == t].mean()
    return out


def _safe(fn: Any, a: np.ndarray, b: np.ndarray) -> float | None:
    if np.std(a) == 0 or np.std(b) == 0:
        return None  # undefined for a constant series
    return float(fn(a, b)[0])


# ---- grouping baselines ------------------------------------------------------------------------------
def compare_groupings(run: Run, seeds: int = 1, progress: Any = None) -> dict[str, Any]:
    """Train group policies for random and gradient-similarity groupings, and one policy for all tasks
    (k = 1), exactly as for the estimated grouping; writes ``groupings.json`` with the mean score of
    each over all tasks."""
    from policygradex.grouping.baselines import gradient_similarity, random_partition, task_mean_gradients
    from policygradex.grouping.cluster import sdp_cluster

    if seeds < 1:
        raise ConfigError(f"random_seeds={seeds} must be at least 1 (the random grouping is the baseline to beat)")
    k, n = int(run.config["k"]), run.family.n
    feats = run.load_features()
    sim = gradient_similarity(task_mean_gradients([feats[i]["grads"] for i in range(n)], [feats[i]["advantages"] for i in range(n)]))
    partitions = {
        "estimated": run.load_groups(),
        "gradient-similarity": sdp_cluster(sim, k=k).groups,
        # k = 1 with the same total budget: separates the gain of grouping from that of more training.
        "one-group": [list(range(n))],
    }
    for s in range(seeds):
        partitions[f"random-{s}"] = random_partition(n, k, seed=int(run.seed) * 1000 + s)
    results: dict[str, Any] = {}
    for name, groups in partitions.items():
        base = run.dir / "groups" if name == "estimated" else run.dir / "baselines" / name
        per_task = run.train_groups(groups, base, "groupings")
        results[name] = {"groups": groups, "mean": float(np.mean(list(per_task.values()))),
                         "per_task": {str(i): per_task[i] for i in sorted(per_task)}}
        if progress:
            progress("groupings", len(results), len(partitions))
    rand = [v["mean"] for k_, v in results.items() if k_.startswith("random-")]
    out = {"k": k, "partitions": results, "random_mean": float(np.mean(rand)),
           "meta_mean": float(np.mean(list(run._metric_of(read_json(run.dir / "meta" / "eval.json")).values())))}
    write_json(run.dir / "groupings.json", out)
    return out
