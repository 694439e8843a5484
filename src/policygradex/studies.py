"""Does the estimate hold? Studies on a finished run directory (issue #4).

* :func:`approx_error` — first-order approximation error of log π around θ* along the surrogate's Δθ
  directions, on held-out transitions (``approx_error.json/.md``, ``figures/approx_error.png``).
* :func:`ground_truth` — actually fine-tune θ* with PPO on every subset and score f(S, i) exactly as the
  estimate is scored (``ground_truth/``): the expensive baseline, resumable subset by subset.
* :func:`agreement` — rank/linear correlation of estimated vs true f(S, i), NMI of the clusterings
  (random partitions beside it), and the compute-time speed-up (``agreement.json``).
* :func:`compare_groupings` — the estimated grouping vs random, gradient-similarity and TAG grouping,
  k = 1 and k = n, each followed by the same group training (``groupings.json``, ``groupings.md``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex.analysis.agreement import nmi, random_nmi, score_agreement
from policygradex.analysis.approx import DEFAULT_DISTANCES, approximation_errors
from policygradex.config import (
    DEFAULT_TAG_EVERY,
    TRUTH_EVAL_SEED_KEY,
    TRUTH_SEED_KEY,
    BudgetRule,
    RunConfig,
    derive_seed,
    fine_tune_ppo,
    group_ppo,
    random_partition_seed,
    stage_seed,
)
from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.execute import FileContents, make_executor
from policygradex.gradex.subsets import first_occurrences
from policygradex.io import write_json, write_text
from policygradex.pipeline import (
    Run,
    estimate_compute_seconds,
    expand_rows,
    job_family,
    load_scores,
    train_partitions,
)
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.policy import log_prob
from policygradex.rl.ppo import PPOConfig
from policygradex.rundir import open_run_dir
from policygradex.tasks import FamilyRef
from policygradex.tasks.base import TaskFamily


# ---- approximation error -----------------------------------------------------------------------------
def approx_error(run: Run, directions: int = 20, distances: Sequence[float] = DEFAULT_DISTANCES) -> dict[str, Any]:
    """Relative error of log π_θ*(a|s) + g̃ᵀw against the true log π_{θ*+Δθ}(a|s) on held-out transitions.

    Directions are the fitted Δθ_S = P·w_S of the first ``directions`` distinct subsets; held-out
    transitions are fresh rollouts of θ* (a seed the features did not use), as many per task as the features.
    Writes ``approx_error.json``, ``approx_error.md`` and its figure.
    """
    from policygradex.gradex.features import collect_features, flatten, unflatten
    from policygradex.gradex.projection import from_record
    from policygradex.report import approx_error_table, plot_approx_error

    if directions < 1:
        raise ConfigError(f"directions={directions} must be at least 1")
    store = run.store
    ckpt = load_checkpoint(store.require(store.meta_checkpoint, "meta"), run.family)
    proj = from_record(store.load_projection())
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
    """Fine-tune θ* (the map's shared input) on one subset and score it (picklable)."""

    family: FamilyRef
    index: int
    tasks: tuple[int, ...]
    ppo: dict[str, Any]
    seed: int
    score_seed: int
    episodes: int


def fine_tune_and_score(job: TruthJob, meta: FileContents) -> dict[str, Any]:
    """Fine-tune θ* on ``job.tasks`` with PPO, then score each task as the estimate does.

    Returns:
        The subset's record, which the caller saves (the worker may not see the run directory):
        ``{"index", "tasks", "rows", "env_steps", "seconds", "relative_distance"}``.
    """
    from policygradex import tasks
    from policygradex.gradex.features import flatten
    from policygradex.gradex.scores import ScoreJob, score_rollouts
    from policygradex.rl.ppo import train

    start = time.perf_counter()
    family = tasks.resolve(job.family)
    checkpoint = meta.local_path()
    ckpt = load_checkpoint(checkpoint, family)
    res = train(family, job.tasks, PPOConfig(**job.ppo), job.seed, init=ckpt.policy)
    delta = flatten(res.policy.actor_params()) - flatten(ckpt.policy.actor_params())
    # Scored through the same function as the estimate: π at θ* + Δθ, same task seeds, same episodes.
    scored = score_rollouts(ScoreJob(checkpoint, family, ((job.index, job.tasks),), delta.numpy()[None], job.episodes, job.score_seed))
    return {
        "index": job.index, "tasks": list(job.tasks), "rows": scored["rows"], "env_steps": res.env_steps,
        "seconds": time.perf_counter() - start, "relative_distance": float(delta.norm() / flatten(ckpt.policy.actor_params()).norm()),
    }


def ground_truth(run: Run, total_steps: int | None = None, executor: str | None = None, workers: int | None = None,
                 progress: Any = None, seed: int = 0) -> dict[str, Any]:
    """Fine-tune θ* on every distinct subset and build the true affinity and clustering (``ground_truth/``).

    Args:
        run: a run whose estimate stage is done.
        total_steps: PPO env steps per subset (default: the meta budget × |S| / n, as for group policies).
        executor, workers: override the run's executor.
        progress: ``progress(stage, done, total)``.
        seed: the truth's seed. 0 is the ground truth the estimate is compared with (its evaluation
            episodes are the estimate's own, common random numbers); another seed repeats the whole
            measurement with other training seeds and other evaluation episodes (``ground_truth_seed<s>/``),
            which :func:`noise_ceiling` compares with seed 0.
    """
    from policygradex.gradex.affinity import affinity
    from policygradex.grouping.cluster import cluster

    if seed < 0:
        raise ConfigError(f"seed={seed} must be ≥ 0 (0 is the ground truth; others measure its noise)")
    store, cfg = run.store, run.config
    subsets = store.load_subsets()
    first = first_occurrences(subsets)
    for s in first:  # every budget checked before anything is written
        fine_tune_ppo(cfg, len(s), total_steps).num_iterations(len(s))
    ex = make_executor(executor or cfg.executor, workers or cfg.workers)  # type: ignore[arg-type]
    open_run_dir(store.ground_truth_dir(seed), {
        "command": "ground-truth",
        "total_steps": total_steps,
        "lr_scale": cfg.groups.lr_scale,
        "score_episodes": cfg.estimate.episodes,
        **({"seed": seed} if seed else {}),
    })
    score_seed = stage_seed(run.seed, "estimate") if seed == 0 else derive_seed(run.seed, TRUTH_SEED_KEY, TRUTH_EVAL_SEED_KEY, seed)
    jobs = []
    for s, l in sorted(first.items(), key=lambda kv: kv[1]):
        if store.truth_subset_path(l, seed).exists():
            continue
        train_seed = derive_seed(run.seed, TRUTH_SEED_KEY, l) if seed == 0 else derive_seed(run.seed, TRUTH_SEED_KEY, l, seed)
        jobs.append(TruthJob(
            job_family(run, executor), l, s, asdict(fine_tune_ppo(cfg, len(s), total_steps)),
            train_seed, score_seed, cfg.estimate.episodes,
        ))
    total = len(first)
    done = total - len(jobs)
    if progress:
        progress("ground-truth", done, total)
    meta = FileContents.read(store.require(store.meta_checkpoint, "meta"))  # sent once, not once per subset
    for job, record in zip(jobs, ex.map(fine_tune_and_score, jobs, meta), strict=True):
        store.save_truth_subset(job.index, record, seed)
        done += 1
        if progress:
            progress("ground-truth", done, total)
    scored: dict[tuple[int, int], float] = {}
    seconds, steps_total = 0.0, 0
    for l in first.values():
        rec = store.load_truth_subset(l, seed)
        seconds += rec["seconds"]
        steps_total += rec["env_steps"]
        for a, b, v in rec["rows"]:
            scored[(int(a), int(b))] = float(v)
    store.save_scores(expand_rows(subsets, scored), "fine-tuned", store.truth_scores_path(seed))
    scores, member = load_scores(run, truth_seed=seed)
    U, cov = affinity(scores, member, cfg.estimate.affinity)
    res = cluster(U, cfg.k, cfg.method, seed=run.seed)
    summary = {"groups": res.groups, "method": cfg.method, "k": cfg.k, "objective": float(res.objective),
               "compute_seconds": seconds, "env_steps": steps_total, "distinct_subsets": len(first), "seed": seed}
    store.save_truth(U, cov, summary, seed)
    return summary


# ---- agreement ---------------------------------------------------------------------------------------
def distinct_pairs(run: Run, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scores of two tables at each distinct (subset, task) pair (repeated subsets would count the
    same pair twice), and each pair's task. Each [P]."""
    seen: set[tuple[tuple[int, ...], int]] = set()
    xa, xb, task = [], [], []
    for l, s in enumerate(run.store.load_subsets()):
        for i in s:
            if (s, i) not in seen:
                seen.add((s, i))
                xa.append(a[l, i])
                xb.append(b[l, i])
                task.append(i)
    return np.array(xa), np.array(xb), np.array(task)


def _table_agreement(run: Run, a: np.ndarray, b: np.ndarray, groups_a: list[list[int]],
                     groups_b: list[list[int]], U_a: np.ndarray, U_b: np.ndarray) -> dict[str, Any]:
    """NMI of two groupings, correlations of two score tables (overall, within task), and the
    correlation of the two affinities' upper triangles."""
    n = run.family.n
    xa, xb, task = distinct_pairs(run, a, b)
    iu = np.triu_indices(n, 1)
    return {
        "pairs": len(xa),
        **score_agreement(xa, xb, task),
        "nmi": nmi(groups_a, groups_b, n),
        "affinity_correlation": float(np.corrcoef(U_a[iu], U_b[iu])[0, 1]) if n > 2 else None,
    }


def noise_ceiling(run: Run, seeds: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """How well the ground truth agrees with itself across truth seeds (issue #12): the ceiling every
    agreement figure of the estimate is read against. Needs ``ground_truth(run, seed=s)`` for both
    seeds; writes ``noise_ceiling.json``."""
    store, n = run.store, run.family.n
    a, b = seeds
    ta, tb = store.load_truth(a), store.load_truth(b)
    sa, _ = load_scores(run, truth_seed=a)
    sb, _ = load_scores(run, truth_seed=b)
    out = {
        "seeds": list(seeds),
        **_table_agreement(run, sa, sb, ta["groups"], tb["groups"], store.load_truth_affinity(n, a),
                           store.load_truth_affinity(n, b)),
        "nmi_random": random_nmi(ta["groups"], n, run.config.k),
        "groups": [ta["groups"], tb["groups"]],
    }
    write_json(store.noise_ceiling_path, out)
    return out


def agreement(run: Run) -> dict[str, Any]:
    """Compare the estimate with the ground truth (and, where measured, with the noise ceiling);
    writes ``agreement.json``."""
    store, n = run.store, run.family.n
    gt = store.load_truth()
    est_scores, _ = load_scores(run)
    true_scores, _ = load_scores(run, truth_seed=0)
    est_groups = store.load_groups(n)
    ests = estimate_compute_seconds(run)
    out = {
        **_table_agreement(run, est_scores, true_scores, est_groups, gt["groups"], store.load_affinity(n),
                           store.load_truth_affinity(n)),
        "nmi_random": random_nmi(gt["groups"], n, run.config.k),
        "estimated_groups": est_groups,
        "true_groups": gt["groups"],
        "estimate_compute_seconds": ests,
        "ground_truth_compute_seconds": gt["compute_seconds"],
        "speedup": gt["compute_seconds"] / max(ests["total"], 1e-9),
        "score_mode": run.config.estimate.score,
        "no_signal_tasks": store.load_signal()["no_signal"] if store.signal_path.exists() else None,
    }
    if store.noise_ceiling_path.exists():
        out["noise_ceiling"] = noise_ceiling(run)
    if run.family.planted_groups:
        out["nmi_estimate_vs_planted"] = nmi(est_groups, run.family.planted_groups, n)
        out["nmi_truth_vs_planted"] = nmi(gt["groups"], run.family.planted_groups, n)
    write_json(store.agreement_path, out)
    return out


# ---- grouping baselines ------------------------------------------------------------------------------
def tag_affinity_of(run: Run) -> np.ndarray | str:
    """TAG's affinity U [n, n] from the lookahead averaged over the meta-training (``meta/tag.pt``):
    Z̄ symmetrised with a zero diagonal (:func:`~policygradex.grouping.baselines.tag_affinity`); or,
    where there is none, one sentence saying why and how to get it."""
    from policygradex.grouping.baselines import tag_affinity

    store, n = run.store, run.family.n
    redo = (f"start a new run with `policygradex run --family {run.family.name} --out NEW_DIR` "
            f"(--meta.tag-every {DEFAULT_TAG_EVERY} is the default)")
    if not store.has_tag():
        every = run.config.meta.tag_every
        if run.config.meta.sb3_model is not None:
            return ("θ* was imported from a Stable-Baselines3 model, so no meta-training recorded TAG's "
                    "lookahead; TAG is not available for such a run")
        if every is None:
            why = "this run predates the TAG lookahead (its config.json has no meta.tag_every)"
        elif every == 0:
            why = "this run's meta-training had the TAG lookahead off (meta.tag_every 0)"
        else:
            why = f"{store.tag_path} is missing although meta.tag_every is {every}"
        return f"{why}, so there is no TAG affinity to cluster; {redo}"
    try:  # a damaged or never-defined lookahead costs the TAG row, not the whole comparison
        return tag_affinity([store.load_tag(n).mean])
    except PolicyGradExError as e:
        return f"the TAG lookahead is unusable: {e}"


def skipped_baselines(run: Run) -> dict[str, str]:
    """The baselines :func:`baseline_partitions` leaves out of this run, each with why and how to get it
    (the ground-truth grouping is left out silently: it is an optional, expensive study)."""
    U = tag_affinity_of(run)
    return {"tag": U} if isinstance(U, str) else {}


def baseline_partitions(run: Run, seeds: int = 1) -> dict[str, list[list[int]]]:
    """Every grouping compared with the estimated one (issue #12, item 3): gradient similarity (SDP on
    the cosine of task-mean advantage-weighted gradients), TAG (the same clustering of the lookahead
    affinity averaged over the meta-training, where it was recorded; see :func:`skipped_baselines`),
    one policy for all tasks (k = 1), one per task (k = n), ``seeds`` random partitions, and the
    ground-truth grouping where it was measured."""
    from policygradex.grouping.baselines import gradient_similarity, random_partition, task_mean_gradients
    from policygradex.grouping.cluster import cluster

    store, k, n = run.store, run.config.k, run.family.n
    feats = store.load_features(n)
    sim = gradient_similarity(task_mean_gradients([feats[i]["grads"] for i in range(n)], [feats[i]["advantages"] for i in range(n)]))
    partitions = {
        "estimated": store.load_groups(n),
        "gradient-similarity": cluster(sim, k, run.config.method, seed=run.seed).groups,
    }
    tag = tag_affinity_of(run)
    if not isinstance(tag, str):
        # TAG's entries are relative loss changes after one step at a training learning rate, often far below 1:
        # scaled to a largest entry of 1 (a positive factor changes no method's partition), so the solvers'
        # tolerances see numbers of the size they were set for
        scale = float(np.abs(tag).max())
        partitions["tag"] = cluster(tag / scale if scale > 0 else tag, k, run.config.method, seed=run.seed).groups
    partitions |= {
        # k = 1 and k = n with the same total budget: the gain of grouping against more training alone
        "one-group": [list(range(n))],
        "single-task": [[i] for i in range(n)],
    }
    if store.has_truth():
        partitions["ground-truth"] = store.load_truth()["groups"]
    for s in range(seeds):
        partitions[f"random-{s}"] = random_partition(n, k, seed=random_partition_seed(run.seed, s))
    return partitions


def compare_groupings(run: Run, seeds: int = 1, progress: Any = None, budget: BudgetRule | None = None) -> dict[str, Any]:
    """Train group policies for every baseline grouping (:func:`baseline_partitions`) exactly as for
    the estimated grouping, under the run's budget rule or ``budget``; writes ``groupings.json``
    (``groupings_<rule>.json`` for another rule) with the per-task and mean score of each, the
    baselines left out and why (``skipped``, see :func:`skipped_baselines`), and its table
    ``groupings.md`` (``groupings_<rule>.md``)."""
    from policygradex.report import groupings_table

    if seeds < 1:
        raise ConfigError(f"random_seeds={seeds} must be at least 1 (the random grouping is the baseline to beat)")
    store, k = run.store, run.config.k
    rule: BudgetRule = budget or run.config.groups.budget
    own_rule = rule == run.config.groups.budget
    partitions = baseline_partitions(run, seeds)

    def where_of(name: str, groups: list[list[int]]) -> str | None:
        # under another rule, a partition whose every group gets the same PPO settings as under the run's own
        # rule (k = 1, k = n) trains exactly as there (same settings, same group seeds): its policies are reused
        same = own_rule or all(group_ppo(run.config, len(g), len(groups), rule) == group_ppo(run.config, len(g), len(groups))
                               for g in groups)
        if same:
            return None if name == "estimated" else name
        return f"{rule}-budget/{name}"

    where = {name: where_of(name, groups) for name, groups in partitions.items()}
    # every group of every grouping in one map, so that a cluster trains them all at once (issue 15)
    trained = train_partitions(run, {where[name]: groups for name, groups in partitions.items()}, "groupings", rule)
    results: dict[str, Any] = {}
    for name, groups in partitions.items():
        per_task = trained[where[name]]
        results[name] = {"groups": groups, "mean": float(np.mean(list(per_task.values()))),
                         "per_task": {str(i): per_task[i] for i in sorted(per_task)}}
        if progress:
            progress("groupings", len(results), len(partitions))
    rand = [v["mean"] for k_, v in results.items() if k_.startswith("random-")]
    out = {"k": k, "budget": rule, "partitions": results, "random_mean": float(np.mean(rand)),
           "meta_mean": float(np.mean(list(run.metric_of(store.load_meta_eval()).values()))),
           "skipped": skipped_baselines(run)}
    write_json(store.groupings_file(rule), out)
    write_text(store.groupings_table_file(rule), groupings_table(out, run.family.full_name, run.family.metric))
    return out


# ---- the comparison over seeds -------------------------------------------------------------------------
def compare_over_seeds(
    family: TaskFamily,
    cfg: RunConfig,
    out: str | os.PathLike[str],
    seeds: Sequence[int],
    random_seeds: int = 2,
    budget: BudgetRule | None = None,
    ground_truth_steps: int | None = None,
    with_truth: bool = False,
    progress: Any = None,
) -> dict[str, Any]:
    """The whole pipeline and :func:`compare_groupings` once per seed (``out/seed_<s>/``), then every
    grouping's mean over seeds with a 95% t interval, and the estimated grouping against each baseline
    paired by seed (mean difference, its interval, fraction of seeds won); writes ``out/comparison.json``.
    A grouping missing in some seed (TAG where a seed's meta-training did not record it) is left out of the
    summary; ``skipped`` says, per grouping and seed, why.

    Args:
        family, cfg: the family and the run configuration (its seed is replaced by each of ``seeds``).
        out: the folder of the per-seed runs.
        seeds: run seeds (at least 2 for an interval).
        random_seeds: random groupings per seed (their mean is the per-seed "random" value).
        budget: the group budget rule (default: the configuration's).
        ground_truth_steps, with_truth: also fine-tune every subset per seed, adding the ground-truth
            grouping as a baseline (expensive).
        progress: ``progress(stage, done, total)``.
    """
    from dataclasses import replace as dc_replace

    from policygradex.analysis.stats import mean_ci, paired_comparison
    from policygradex.pipeline import reopen
    from policygradex.pipeline import run as run_pipeline

    if len(seeds) < 1 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={list(seeds)} must be distinct and at least one")
    root = Path(out)
    per_seed: dict[int, dict[str, float]] = {}
    groups: dict[int, dict[str, list[list[int]]]] = {}
    skipped: dict[str, dict[str, str]] = {}
    for j, s in enumerate(seeds):
        d = root / f"seed_{s}"
        run_pipeline(family, dc_replace(cfg, seed=s), d, progress)
        r = reopen(d, progress)
        if with_truth:
            ground_truth(r, total_steps=ground_truth_steps, progress=progress)
        cg = compare_groupings(r, seeds=random_seeds, progress=progress, budget=budget)
        values = {name: p["mean"] for name, p in cg["partitions"].items() if not name.startswith("random-")}
        values["random"] = cg["random_mean"]
        values["theta*"] = cg["meta_mean"]
        per_seed[s] = values
        groups[s] = {name: p["groups"] for name, p in cg["partitions"].items()}
        for name, why in cg["skipped"].items():
            skipped.setdefault(name, {})[str(s)] = why
        if progress:
            progress("seeds", j + 1, len(seeds))
    methods = [m for m in per_seed[seeds[0]] if all(m in v for v in per_seed.values())]
    summary: dict[str, Any] = {}
    for m in methods:
        iv = mean_ci([per_seed[s][m] for s in seeds]) if len(seeds) > 1 else None
        summary[m] = {"mean": float(np.mean([per_seed[s][m] for s in seeds])),
                      "ci95": None if iv is None else [iv.low, iv.high]}
    paired: dict[str, Any] = {}
    if len(seeds) > 1:
        est = [per_seed[s]["estimated"] for s in seeds]
        for m in methods:
            if m == "estimated":
                continue
            pc = paired_comparison(est, [per_seed[s][m] for s in seeds])
            paired[m] = {"diff": pc.diff.mean, "ci95": [pc.diff.low, pc.diff.high], "wins": pc.wins,
                         "p_value": pc.p_value}
    result = {"family": family.full_name, "seeds": list(seeds), "k": cfg.k, "budget": budget or cfg.groups.budget,
              "per_seed": {str(s): per_seed[s] for s in seeds}, "groups": {str(s): groups[s] for s in seeds},
              "summary": summary, "estimated_minus": paired, "skipped": skipped}
    write_json(root / "comparison.json", result)
    return result
