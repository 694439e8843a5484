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

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from policygradex.analysis.agreement import nmi, random_nmi, score_agreement
from policygradex.analysis.approx import DEFAULT_DISTANCES, approximation_errors
from policygradex.config import TRUTH_SEED_KEY, derive_seed, fine_tune_ppo, random_partition_seed, stage_seed
from policygradex.errors import ConfigError
from policygradex.execute import make_executor
from policygradex.gradex.subsets import first_occurrences
from policygradex.io import write_json, write_text
from policygradex.pipeline import (
    Run,
    estimate_compute_seconds,
    expand_rows,
    job_family,
    load_scores,
    train_groups,
)
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.policy import log_prob
from policygradex.rl.ppo import PPOConfig
from policygradex.rundir import open_run_dir
from policygradex.tasks import FamilyRef


# ---- approximation error -----------------------------------------------------------------------------
def approx_error(run: Run, directions: int = 20, distances: Sequence[float] = DEFAULT_DISTANCES) -> dict[str, Any]:
    """Relative error of log π_θ*(a|s) + g̃ᵀw against the true log π_{θ*+Δθ}(a|s) on held-out transitions.

    Directions are the fitted Δθ_S = P·w_S of the first ``directions`` distinct subsets; held-out
    transitions are fresh rollouts of θ* (a seed the features did not use), as many per task as the features.
    Writes ``approx_error.json``, ``approx_error.md`` and its figure.
    """
    from policygradex.gradex.features import collect_features, flatten, unflatten
    from policygradex.gradex.projection import GaussianProjection
    from policygradex.report import approx_error_table, plot_approx_error

    if directions < 1:
        raise ConfigError(f"directions={directions} must be at least 1")
    store = run.store
    ckpt = load_checkpoint(store.require(store.meta_checkpoint, "meta"), run.family)
    pj = store.load_projection()
    proj = GaussianProjection(p=pj["p"], d=pj["d"], seed=pj["seed"])
    weights = store.load_weights().float()
    first = sorted(first_occurrences(store.load_subsets()).values())[:directions]
    W = weights[first]  # [K, d]
    lifted = proj.lift(W)  # [K, p]
    lnorm = lifted.norm(dim=1).clamp_min(1e-12)
    units = lifted / lnorm[:, None]
    ppo, fc = run.config.meta.ppo, run.config.features
    held = collect_features(
        ckpt.policy, run.family, proj, fc.samples_per_task, stage_seed(run.seed, "features") + 1000,
        envs_per_task=fc.envs_per_task, gamma=ppo.gamma, lam=ppo.gae_lambda,
    )
    params = ckpt.policy.actor_params()
    theta = flatten(params)
    per_task = []
    for i in range(run.family.n):
        f = held[i]

        def logp_at(th: torch.Tensor, f: Any = f) -> torch.Tensor:
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
           "samples_per_task": fc.samples_per_task, "errors": table}
    write_json(store.approx_error_json, out)
    write_text(store.approx_error_md, approx_error_table(out))
    plot_approx_error(store.approx_error_png, table, run.family.full_name)
    return out


# ---- ground truth by full training -------------------------------------------------------------------
@dataclass(frozen=True)
class TruthJob:
    """Fine-tune θ* on one subset and score it (picklable)."""

    checkpoint: str
    family: FamilyRef
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
    family = tasks.resolve(job.family)
    ckpt = load_checkpoint(job.checkpoint, family)
    res = train(family, job.tasks, PPOConfig(**job.ppo), job.seed, init=ckpt.policy)
    delta = flatten(res.policy.actor_params()) - flatten(ckpt.policy.actor_params())
    # Scored through the same function as the estimate: π at θ* + Δθ, same task seeds, same episodes.
    scored = score_rollouts(ScoreJob(job.checkpoint, family, ((job.index, job.tasks),), delta.numpy()[None], job.episodes, job.score_seed))
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
    from policygradex.grouping.cluster import cluster

    store, cfg = run.store, run.config
    subsets = store.load_subsets()
    first = first_occurrences(subsets)
    for s in first:  # every budget checked before anything is written
        fine_tune_ppo(cfg, len(s), total_steps).num_iterations(len(s))
    ex = make_executor(executor or cfg.executor, workers or cfg.workers)  # type: ignore[arg-type]
    open_run_dir(store.ground_truth_dir, {
        "command": "ground-truth",
        "total_steps": total_steps,
        "lr_scale": cfg.groups.lr_scale,
        "score_episodes": cfg.estimate.episodes,
    })
    jobs = []
    for s, l in sorted(first.items(), key=lambda kv: kv[1]):
        out = store.truth_subset_path(l)
        if out.exists():
            continue
        jobs.append(TruthJob(
            str(store.meta_checkpoint), job_family(run, executor), l, s, asdict(fine_tune_ppo(cfg, len(s), total_steps)),
            derive_seed(run.seed, TRUTH_SEED_KEY, l), stage_seed(run.seed, "estimate"), cfg.estimate.episodes, str(out),
        ))
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
        rec = store.load_truth_subset(l)
        seconds += rec["seconds"]
        steps_total += rec["env_steps"]
        for a, b, v in rec["rows"]:
            scored[(int(a), int(b))] = float(v)
    store.save_scores(expand_rows(subsets, scored), "fine-tuned", store.truth_scores_path)
    scores, member = load_scores(run, "ground-truth")
    U, cov = affinity(scores, member, cfg.estimate.affinity)
    res = cluster(U, cfg.k, cfg.method, seed=run.seed)
    summary = {"groups": res.groups, "method": cfg.method, "k": cfg.k, "objective": float(res.objective),
               "compute_seconds": seconds, "env_steps": steps_total, "distinct_subsets": len(first)}
    store.save_truth(U, cov, summary)
    return summary


# ---- agreement ---------------------------------------------------------------------------------------
def agreement(run: Run) -> dict[str, Any]:
    """Compare the estimate with the ground truth; writes ``agreement.json``."""
    store, n = run.store, run.family.n
    gt = store.load_truth()
    est_scores, _ = load_scores(run)
    true_scores, _ = load_scores(run, "ground-truth")
    # distinct (subset, task) pairs only: repeated subsets would count the same pair twice
    seen: set[tuple[tuple[int, ...], int]] = set()
    est, tru, task = [], [], []
    for l, s in enumerate(store.load_subsets()):
        for i in s:
            if (s, i) not in seen:
                seen.add((s, i))
                est.append(est_scores[l, i])
                tru.append(true_scores[l, i])
                task.append(i)
    est_groups = store.load_groups(n)
    ests = estimate_compute_seconds(run)
    out = {
        "pairs": len(est),
        **score_agreement(np.array(est), np.array(tru), np.array(task)),
        "nmi": nmi(est_groups, gt["groups"], n),
        "nmi_random": random_nmi(gt["groups"], n, run.config.k),
        "estimated_groups": est_groups,
        "true_groups": gt["groups"],
        "estimate_compute_seconds": ests,
        "ground_truth_compute_seconds": gt["compute_seconds"],
        "speedup": gt["compute_seconds"] / max(ests["total"], 1e-9),
        "score_mode": run.config.estimate.score,
    }
    if run.family.planted_groups:
        out["nmi_estimate_vs_planted"] = nmi(est_groups, run.family.planted_groups, n)
        out["nmi_truth_vs_planted"] = nmi(gt["groups"], run.family.planted_groups, n)
    write_json(store.agreement_path, out)
    return out


# ---- grouping baselines ------------------------------------------------------------------------------
def compare_groupings(run: Run, seeds: int = 1, progress: Any = None) -> dict[str, Any]:
    """Train group policies for random and gradient-similarity groupings, and one policy for all tasks
    (k = 1), exactly as for the estimated grouping; writes ``groupings.json`` with the mean score of
    each over all tasks."""
    from policygradex.grouping.baselines import gradient_similarity, random_partition, task_mean_gradients
    from policygradex.grouping.cluster import sdp_cluster

    if seeds < 1:
        raise ConfigError(f"random_seeds={seeds} must be at least 1 (the random grouping is the baseline to beat)")
    store, k, n = run.store, run.config.k, run.family.n
    estimated = store.load_groups(n)
    feats = store.load_features(n)
    sim = gradient_similarity(task_mean_gradients([feats[i]["grads"] for i in range(n)], [feats[i]["advantages"] for i in range(n)]))
    partitions = {
        "estimated": estimated,
        "gradient-similarity": sdp_cluster(sim, k=k).groups,
        # k = 1 with the same total budget: separates the gain of grouping from that of more training.
        "one-group": [list(range(n))],
    }
    for s in range(seeds):
        partitions[f"random-{s}"] = random_partition(n, k, seed=random_partition_seed(run.seed, s))
    results: dict[str, Any] = {}
    for name, groups in partitions.items():
        per_task = train_groups(run, groups, None if name == "estimated" else name, "groupings")
        results[name] = {"groups": groups, "mean": float(np.mean(list(per_task.values()))),
                         "per_task": {str(i): per_task[i] for i in sorted(per_task)}}
        if progress:
            progress("groupings", len(results), len(partitions))
    rand = [v["mean"] for k_, v in results.items() if k_.startswith("random-")]
    out = {"k": k, "partitions": results, "random_mean": float(np.mean(rand)),
           "meta_mean": float(np.mean(list(run.metric_of(store.load_meta_eval()).values())))}
    write_json(store.groupings_path, out)
    return out
