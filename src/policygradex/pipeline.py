"""The PolicyGradEx pipeline as stages over one run directory.

    meta ─► features ─► subsets ─► estimate ─► affinity ─► cluster ─► groups ─► report

Each stage is a function ``stage_<name>(run)`` of the shape "load inputs from the store → call the
maths layers → save outputs to the store", and skips itself when its outputs exist; so rerunning
``run`` on the same directory resumes a killed run, and the result is the same as an uninterrupted
run (every stage is deterministic given the run's seed).

>>> from policygradex import pipeline, tasks
>>> result = pipeline.run(tasks.make("planted-toy"), pipeline.RunConfig(preset="smoke"), out="runs/toy")
>>> result.groups
[[0, 3], [1, 4], [2, 5]]
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from policygradex.config import (
    GROUP_SEED_KEY,
    STAGES,
    BudgetRule,
    EstimateConfig,
    FeatureConfig,
    GroupConfig,
    MetaConfig,
    ResolvedRun,
    RunConfig,
    Stage,
    derive_seed,
    from_data,
    group_ppo,
    resolve,
    stage_seed,
    to_data,
)
from policygradex.errors import PolicyGradExError
from policygradex.execute import FileContents, check_available, make_executor
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.policy import PolicyConfig
from policygradex.rl.ppo import PPOConfig
from policygradex.rundir import RunStore, config_path, is_trained, open_run_dir, read_config
from policygradex.tasks import FamilyRef, portable
from policygradex.tasks.base import TaskFamily
from policygradex.threads import torch_threads

if TYPE_CHECKING:
    from policygradex.gradex.scores import ScoreJob

__all__ = [
    "STAGES", "EstimateConfig", "FeatureConfig", "GroupConfig", "MetaConfig", "Run", "RunConfig", "RunResult",
    "Stage", "open_run", "reopen", "resolve", "run", "run_stage",
]

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass
class Run:
    """An open run directory: the family, its store and its resolved configuration.

    Attributes:
        family: the task family.
        store: typed access to the run directory's artifacts.
        config: the resolved configuration (``config.json``).
        progress: called as ``progress(stage, done, total)`` during long stages.
        timings: wall-clock seconds of each stage run in this process.
    """

    family: TaskFamily
    store: RunStore
    config: ResolvedRun
    progress: Progress = _no_progress
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        """The run directory."""
        return self.store.dir

    @property
    def seed(self) -> int:
        """The run's seed."""
        return self.config.seed

    def metric_of(self, evaluation: dict[str, Any]) -> dict[int, float]:
        """Per-task score of an evaluation record, in the family's metric (return or success rate)."""
        key = "success_rate" if self.family.metric == "success" else "mean_return"
        return {int(k): float(v) for k, v in evaluation[key].items()}


# ---- stages ----------------------------------------------------------------------------------------
def stage_meta(run: Run) -> None:
    """Meta-train θ* on all n tasks (``meta/``); resumes mid-training. With ``meta.tag_every`` K > 0,
    TAG's lookahead affinity is averaged over the training (every K updates) into ``meta/tag.pt``,
    written before θ*'s checkpoint; it changes no weight of θ*. With ``meta.sb3_model``, import that
    Stable-Baselines3 model as θ* instead (and evaluate it as a trained θ* is; no TAG record)."""
    from policygradex.training import TagLookahead, import_into, train_into

    meta = run.config.meta
    if meta.sb3_model is not None:
        from policygradex.rl.sb3 import load_sb3_policy

        import_into(
            run.store.meta_dir, load_sb3_policy(meta.sb3_model, run.family), run.family, range(run.family.n),
            stage_seed(run.seed, "meta"), run.config.groups.eval_episodes,
            {"imported": meta.sb3_model, "sha256": meta.sb3_sha256, "format": "stable-baselines3 PPO"},
        )
        return
    every = meta.tag_every or 0
    tag = TagLookahead(range(run.family.n), every, meta.ppo.clip_coef, meta.ppo.norm_adv) if every else None
    train_into(
        run.store.meta_dir, run.family, range(run.family.n), meta.ppo, meta.policy,
        stage_seed(run.seed, "meta"), run.config.groups.eval_episodes,
        progress=lambda it, total, m: run.progress("meta", it, total),
        observer=tag, on_done=None if tag is None else lambda: run.store.save_tag(tag.record()),
    )


def stage_features(run: Run) -> None:
    """Roll out θ*, compute projected per-sample gradients (``features/``)."""
    from policygradex.gradex.features import collect_features
    from policygradex.gradex.projection import make_projection, projection_record

    if run.store.features_done():
        return
    ckpt = load_checkpoint(run.store.require(run.store.meta_checkpoint, "meta"), run.family)
    fc, ppo = run.config.features, run.config.meta.ppo
    seed = stage_seed(run.seed, "features")
    proj = make_projection(fc.projection, ckpt.policy.actor, fc.d, seed)
    start = time.perf_counter()
    feats = collect_features(
        ckpt.policy, run.family, proj, fc.samples_per_task, seed + 1,
        envs_per_task=fc.envs_per_task, gamma=ppo.gamma, lam=ppo.gae_lambda,
        progress=lambda done, total: run.progress("features", done, total),
    )
    run.store.save_features(
        {i: f.to_dict() for i, f in feats.items()},
        {**projection_record(proj), "seconds": time.perf_counter() - start},
    )


def stage_subsets(run: Run) -> None:
    """Sample the m subsets, each with its own seed (``subsets.json``)."""
    from policygradex.gradex.subsets import coverage, sample_subsets

    if run.store.subsets_path.exists():
        return
    e, n = run.config.estimate, run.family.n
    # enough top-up room to cover every pair min_coverage times even if sampling covered none
    extra = e.num_subsets + e.min_coverage * n * (n - 1) // 2
    subsets = sample_subsets(
        n, e.num_subsets, e.subset_size, stage_seed(run.seed, "subsets"), min_coverage=e.min_coverage, max_extra=extra
    )
    cov = coverage(subsets, n)
    run.store.save_subsets(subsets, int(cov[~np.eye(n, dtype=bool)].min()) if n > 1 else 0)


def stage_estimate(run: Run) -> None:
    """Fit Δθ_S for every subset and score f(S, i) (``estimate/``, ``scores.jsonl``)."""
    from policygradex.gradex.surrogate import fit_subsets

    if run.store.scores_path.exists():
        return
    e, n = run.config.estimate, run.family.n
    subsets = run.store.load_subsets()
    feats = run.store.load_features(n)
    grads = [feats[i]["grads"] for i in range(n)]
    advantages = [feats[i]["advantages"] for i in range(n)]
    if not run.store.fits_done():
        t = time.perf_counter()
        weights = fit_subsets(grads, advantages, subsets, e.l2)
        run.store.save_fits(weights, time.perf_counter() - t)
    weights = run.store.load_weights()
    deltas, coef_scale = surrogate_deltas(run, weights)
    if e.score == "surrogate":
        from policygradex.gradex.scores import score_surrogate

        base = run.metric_of(run.store.load_meta_eval())
        table = score_surrogate(weights, subsets, grads, advantages, [base[i] for i in range(n)], coef_scale)
        rows = [(l, i, float(table[l, i])) for l, s in enumerate(subsets) for i in s]
    elif e.score == "objective":
        from policygradex.gradex.scores import score_objective_change

        table = score_objective_change(weights, subsets, grads, advantages, coef_scale)
        rows = [(l, i, float(table[l, i])) for l, s in enumerate(subsets) for i in s]
    else:
        rows = _score_rollouts(run, subsets, deltas)
    run.store.save_scores(rows, e.score)


def surrogate_deltas(run: Run, weights: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Δθ_S = P·w_S [m, p], rescaled to ``relative_norm``·‖θ*‖; also the factor applied to each w_S [m]."""
    from policygradex.gradex.features import flatten
    from policygradex.gradex.projection import from_record
    from policygradex.gradex.scores import scale_deltas

    proj = from_record(run.store.load_projection())
    raw = proj.lift(weights.float())
    ckpt = load_checkpoint(run.store.meta_checkpoint, run.family)
    theta_norm = float(flatten(ckpt.policy.actor_params()).norm())
    scaled = scale_deltas(raw, theta_norm, run.config.estimate.relative_norm)
    factor = scaled.norm(dim=1) / raw.norm(dim=1).clamp_min(1e-12)
    return scaled.numpy().astype(np.float32), factor


def expand_rows(
    subsets: list[tuple[int, ...]], scored: dict[tuple[int, int], float]
) -> list[tuple[int, int, float]]:
    """Rows (subset, task, score) for every subset from the scores of each subset's first occurrence.

    Equal subsets have equal Δθ and, with common random numbers, equal scores: each distinct subset is
    scored once (``scored`` is keyed by (first index of the subset, task)).
    """
    from policygradex.gradex.subsets import first_occurrences

    first = first_occurrences(subsets)
    return [(l, i, scored[(first[s], i)]) for l, s in enumerate(subsets) for i in s]


def _score_rollouts(run: Run, subsets: list[tuple[int, ...]], deltas: np.ndarray) -> list[tuple[int, int, float]]:
    """Score distinct subsets by rollouts in chunks through the executor, one file per chunk.

    Finished chunks are kept, so a killed stage resumes where it stopped.
    """
    from policygradex.gradex.scores import ScoreJob
    from policygradex.gradex.subsets import first_occurrences

    e = run.config.estimate
    distinct = sorted(first_occurrences(subsets).values())
    starts = list(range(0, len(distinct), e.chunk))
    todo = [c for c in starts if not run.store.chunk_path(c).exists()]
    jobs = [
        ScoreJob(
            checkpoint=str(run.store.meta_checkpoint), family=job_family(run),
            subsets=tuple((l, subsets[l]) for l in distinct[c : c + e.chunk]),
            deltas=deltas[distinct[c : c + e.chunk]], episodes=e.episodes, seed=stage_seed(run.seed, "estimate"),
        )
        for c in todo
    ]
    executor = make_executor(run.config.executor, run.config.workers)
    done = len(starts) - len(todo)
    if done:
        log.info("estimate: %d of %d chunks of subsets already scored; scoring the other %d", done, len(starts), len(todo))
    run.progress("estimate", done, len(starts))
    meta = FileContents.read(run.store.meta_checkpoint)  # sent once, not once per chunk
    for c, res in zip(todo, executor.map(score_chunk, jobs, meta), strict=True):
        run.store.save_chunk(c, res["rows"], res["seconds"])
        done += 1
        run.progress("estimate", done, len(starts))
    scored: dict[tuple[int, int], float] = {}
    for c in starts:
        for a, b, v in run.store.load_chunk(c)["rows"]:
            scored[(int(a), int(b))] = float(v)
    return expand_rows(subsets, scored)


def score_chunk(job: ScoreJob, meta: FileContents) -> dict[str, Any]:
    """:func:`~policygradex.gradex.scores.score_rollouts` with θ* from the contents the caller sent
    (the worker may not see the run directory)."""
    from policygradex.gradex.scores import score_rollouts

    return score_rollouts(replace(job, checkpoint=meta.local_path()))


def job_family(run: Run, executor: str | None = None) -> FamilyRef:
    """The family as work items carry it: the object itself for the serial executor, and for worker
    processes the object where it pickles (so a family in no registry works), else the string a fresh
    process rebuilds it from: its ``module:factory``, entry-point or built-in name
    (:func:`policygradex.tasks.portable`)."""
    return run.family if (executor or run.config.executor) == "serial" else portable(run.family)


def load_scores(run: Run, truth_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Scores [m, n] (NaN outside the subset) and membership [m, n] of the estimate (``truth_seed``
    None) or of the ground truth with that seed."""
    from policygradex.gradex.subsets import membership

    subsets = run.store.load_subsets()
    n = run.family.n
    if truth_seed is None:
        scores = run.store.load_scores(len(subsets), n)
    else:
        scores = run.store.load_scores(len(subsets), n, run.store.truth_scores_path(truth_seed), "ground-truth")
    return scores, membership(subsets, n)


def stage_affinity(run: Run) -> None:
    """Build U from the scores in every mode (``affinity*.npy``, ``coverage.npy``) and flag the tasks
    whose scores carry no signal across subsets (``signal.json``; issue #12)."""
    from policygradex.gradex.affinity import affinity, no_signal_tasks

    if run.store.affinity_path.exists():
        return
    scores, member = load_scores(run)
    check = no_signal_tasks(scores, member)
    run.store.save_signal({
        "no_signal": check.tasks, "spread": check.spread.tolist(), "distinct_subsets": check.distinct.tolist(),
        "rule": "constant across distinct subsets (noise level 0)",
    })
    by_mode = {}
    for m in ("task", "aggregate", "regression"):
        by_mode[m], cov = affinity(scores, member, m)
    run.store.save_affinity(by_mode, cov, run.config.estimate.affinity)


def stage_cluster(run: Run) -> None:
    """Partition the tasks into k groups (``groups.json``)."""
    from policygradex.grouping.cluster import cluster

    if run.store.groups_path.exists():
        return
    U = run.store.load_affinity(run.family.n)
    res = cluster(U, run.config.k, run.config.method, seed=run.seed)
    run.store.save_groups({
        "groups": [list(map(int, g)) for g in res.groups], "method": run.config.method, "k": run.config.k,
        "objective": float(res.objective), "affinity": run.config.estimate.affinity,
    })


def stage_groups(run: Run) -> None:
    """Train one policy per group (``groups/<g>/``)."""
    train_groups(run, run.store.load_groups(run.family.n), None, "groups")


def train_groups(
    run: Run, groups: list[list[int]], baseline: str | None, stage: str, budget: BudgetRule | None = None
) -> dict[int, float]:
    """Train one policy per group (resuming finished ones) and return every task's score under its
    group's policy. Used for the estimated grouping (``baseline=None``) and for the baselines;
    ``budget`` overrides the run's budget rule."""
    return train_partitions(run, {baseline: groups}, stage, budget)[baseline]


def train_partitions(
    run: Run, partitions: dict[str | None, list[list[int]]], stage: str, budget: BudgetRule | None = None
) -> dict[str | None, dict[int, float]]:
    """:func:`train_groups` for several partitions at once (keyed by where they are trained, see
    :meth:`RunStore.group_dir`), so that every group of every partition is one work item of one map.

    A local executor trains into the run directory (a killed training resumes mid-way); a Ray worker
    trains in its own scratch directory and sends the files back, written here atomically (issue 15).
    """
    from policygradex.rundir import save_trained

    gc = run.config.groups
    if gc.init == "meta":
        run.store.require(run.store.meta_checkpoint, "meta")
    executor = make_executor(run.config.executor, run.config.workers)
    where = [(baseline, g) for baseline, groups in partitions.items() for g in range(len(groups))]
    todo = [(b, g) for b, g in where if not is_trained(run.store.group_dir(g, b))]
    if len(todo) < len(where):
        log.info("%s: %d group(s) already trained; training the other %d", stage, len(where) - len(todo), len(todo))
    jobs = []
    for baseline, g in todo:
        groups = partitions[baseline]
        jobs.append(GroupJob(
            directory=str(run.store.group_dir(g, baseline)) if executor.local else None, family=job_family(run),
            tasks=tuple(groups[g]), ppo=asdict(group_ppo(run.config, len(groups[g]), len(groups), budget)),
            policy=asdict(run.config.meta.policy), seed=derive_seed(run.seed, GROUP_SEED_KEY, g),
            eval_episodes=gc.eval_episodes, init=gc.init == "meta",
        ))
    meta = FileContents.read(run.store.meta_checkpoint) if gc.init == "meta" and jobs else None
    done = len(where) - len(todo)
    run.progress(stage, done, len(where))
    for (baseline, g), files in zip(todo, executor.map(train_group, jobs, meta), strict=True):
        if files:
            save_trained(run.store.group_dir(g, baseline), files)
        done += 1
        run.progress(stage, done, len(where))
    out: dict[str | None, dict[int, float]] = {}
    for baseline, groups in partitions.items():
        scores = out[baseline] = {}
        for g, members in enumerate(groups):
            ev = run.metric_of(run.store.load_eval(run.store.group_dir(g, baseline)))
            scores.update({i: ev[i] for i in members})
    return out


def results(run: Run) -> dict[str, Any]:
    """Per-task scores of θ* alone and of the group policies."""
    meta = run.metric_of(run.store.load_meta_eval())
    n = run.family.n
    groups = run.store.load_groups(n)
    group_of, group_scores, group_training = {}, {}, []
    for g, members in enumerate(groups):
        record = run.store.load_eval(run.store.group_dir(g))
        ev = run.metric_of(record)
        group_training.append({"group": g, "env_steps": record.get("env_steps")})
        for i in members:
            group_of[i] = g
            group_scores[i] = ev[i]
    meta_record = run.store.load_meta_eval()
    return {
        "family": run.family.full_name,
        "metric": run.family.metric,
        "k": run.config.k,
        "groups": groups,
        "num_subsets": len(run.store.load_subsets()),
        "score_mode": run.config.estimate.score,
        "affinity_mode": run.config.estimate.affinity,
        "planted_groups": [list(g) for g in run.family.planted_groups] if run.family.planted_groups else None,
        "tasks": [
            {"index": i, "name": run.family.tasks[i].name, "group": group_of[i], "meta": meta[i], "group_policy": group_scores[i]}
            for i in range(n)
        ],
        "mean_meta": float(np.mean([meta[i] for i in range(n)])),
        "mean_group_policy": float(np.mean([group_scores[i] for i in range(n)])),
        # runs made before the check existed have no signal.json: unknown, not "none"
        "no_signal_tasks": run.store.load_signal()["no_signal"] if run.store.signal_path.exists() else None,
        "budget_rule": run.config.groups.budget if run.config.groups.total_steps is None else "fixed",
        "meta_training": {k: meta_record.get(k) for k in ("env_steps", "imported")},
        "group_training": group_training,
    }


def stage_report(run: Run) -> None:
    """Write ``results.json`` (with the summary in words), the figures, ``report.md`` and, last,
    ``report.html`` (issue 16)."""
    from policygradex.io import write_text
    from policygradex.report import (
        curve_points,
        explain,
        plot_affinity,
        plot_curves,
        plot_task_scores,
        render_html,
        render_markdown,
        report_blocks,
    )

    res = results(run)
    U = run.store.load_affinity(run.family.n)
    res["summary"] = explain(res, U)
    run.store.save_results(res)
    plot_affinity(run.store.figure_path("affinity"), U, res["groups"], [t["name"] for t in res["tasks"]])
    plot_task_scores(run.store.figure_path("tasks"), res)
    figures = ["affinity", "tasks"]
    curves = {"θ*": curve_points(run.store.load_metrics(run.store.meta_dir))}
    curves.update({f"group {g}": curve_points(run.store.load_metrics(run.store.group_dir(g))) for g in range(len(res["groups"]))})
    if any(curves.values()):
        plot_curves(run.store.figure_path("curves"), curves, "mean training-episode return")
        figures.append("curves")
    # wall-clocks stay out of results.json (a seed fixes it byte for byte) and go to the report's last section
    training = {"θ* (meta-training)": run.store.load_meta_eval().get("wall_seconds")}
    training.update({f"group {g}": run.store.load_eval(run.store.group_dir(g)).get("wall_seconds")
                     for g in range(len(res["groups"]))})
    timings = {"training": {k: float(v) for k, v in training.items() if v}, "stages": run.store.load_timings()}
    blocks = report_blocks(res, run.store.load_coverage(), run.config, timings, figures)
    write_text(run.store.report_path, render_markdown(blocks))
    write_text(run.store.report_html_path, render_html(blocks, run.store.figure_path("affinity").parent))


STAGE_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "meta": stage_meta, "features": stage_features, "subsets": stage_subsets, "estimate": stage_estimate,
    "affinity": stage_affinity, "cluster": stage_cluster, "groups": stage_groups, "report": stage_report,
}


def _groups_done(run: Run) -> bool:
    if not run.store.groups_path.exists():
        return False
    return all(is_trained(run.store.group_dir(g)) for g in range(len(run.store.load_groups(run.family.n))))


STAGE_DONE: dict[str, Callable[[Run], bool]] = {
    "meta": lambda run: is_trained(run.store.meta_dir),
    "features": lambda run: run.store.features_done(),
    "subsets": lambda run: run.store.subsets_path.exists(),
    "estimate": lambda run: run.store.scores_path.exists(),
    "affinity": lambda run: run.store.affinity_path.exists(),
    "cluster": lambda run: run.store.groups_path.exists(),
    "groups": _groups_done,
    "report": lambda run: run.store.report_done(),
}
"""Stage → whether its outputs (its completion mark) exist, so a rerun skips it."""


def run_stage(run: Run, stage: Stage, force: bool = False) -> None:
    """Run one stage, or skip it if its outputs exist (``force``: run it all the same; only the report
    is rewritten from scratch, the other stages keep what they find). Logs "started" and "done in N s"
    or "skipped: outputs exist" to the ``policygradex.pipeline`` logger (issue 16); the wall-clock goes
    to ``run.timings`` and, for a stage that ran, to ``timings.json``."""
    extra = {"stage": stage}
    if not force and STAGE_DONE[stage](run):
        log.info("%s: skipped: outputs exist", stage, extra={**extra, "event": "skipped"})
        return
    log.info("%s: started", stage, extra={**extra, "event": "started"})
    t = time.perf_counter()
    STAGE_FUNCTIONS[stage](run)
    seconds = run.timings[stage] = time.perf_counter() - t
    run.store.save_timing(stage, seconds)
    log.info("%s: done in %.1f s", stage, seconds, extra={**extra, "event": "done", "seconds": seconds})


def estimate_compute_seconds(run: Run) -> dict[str, float]:
    """Compute time the estimate took, summed over work items (resume-proof: recorded when done)."""
    out = {
        "features": float(run.store.load_projection()["seconds"]),
        "fits": run.store.fit_seconds(),
        "scoring": run.store.chunk_seconds(),
    }
    out["total"] = out["features"] + out["fits"] + out["scoring"]
    return out


# ---- group training work item ----------------------------------------------------------------------
@dataclass(frozen=True)
class GroupJob:
    """One group policy to train (picklable, for any executor).

    Attributes:
        directory: where to train (resuming there), or None: in a scratch directory of the worker, whose
            files :func:`train_group` returns.
        init: fine-tune θ* (sent as the map's shared input) instead of training from scratch.
    """

    directory: str | None
    family: FamilyRef
    tasks: tuple[int, ...]
    ppo: dict[str, Any]
    policy: dict[str, Any]
    seed: int
    eval_episodes: int
    init: bool


def train_group(job: GroupJob, meta: FileContents | None) -> dict[str, bytes]:
    """Train (or resume) one group policy; returns the trained directory's files when it trained in
    scratch (``job.directory`` None), else nothing."""
    import tempfile

    from policygradex import tasks
    from policygradex.rundir import trained_files
    from policygradex.training import train_into

    family = tasks.resolve(job.family)
    init = None
    if job.init:
        if meta is None:
            raise PolicyGradExError("a group to fine-tune from θ* was sent without θ*; rerun the stage")
        init = load_checkpoint(meta.local_path(), family).policy

    def train(directory: str) -> None:
        train_into(
            directory, family, job.tasks, PPOConfig(**job.ppo), PolicyConfig(**job.policy), job.seed,
            job.eval_episodes, init=init,
        )

    if job.directory is not None:
        train(job.directory)
        return {}
    with tempfile.TemporaryDirectory(prefix="policygradex-group-") as scratch:
        train(scratch)
        return trained_files(scratch)


# ---- opening runs ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What a run produced, as far as it went (the full record is ``results.json``).

    Attributes:
        directory: the run directory.
        stages: the stages that have completed, in order.
        groups: the partition (None before the ``cluster`` stage).
        affinity: the affinity U [n, n] (None before the ``affinity`` stage).
        meta_scores, group_scores: every task's score under θ* and under its group's policy (None
            before the ``report`` stage).
    """

    directory: Path
    stages: tuple[str, ...]
    groups: list[list[int]] | None = None
    affinity: np.ndarray | None = None
    meta_scores: dict[int, float] | None = None
    group_scores: dict[int, float] | None = None


def open_run(
    family: TaskFamily, cfg: RunConfig, out: str | os.PathLike[str], progress: Progress | None = None
) -> Run:
    """Create (or reopen, for the same configuration) the run directory ``out``."""
    config = resolve(family, cfg)
    check_available(config.executor)  # before anything is written: a missing Ray is one line, not a late crash
    directory = open_run_dir(out, to_data(config))
    return Run(family, RunStore(directory, family.ref), config, progress or _no_progress)


def reopen(directory: str | os.PathLike[str], progress: Progress | None = None) -> Run:
    """Open an existing run directory with its saved configuration."""
    from policygradex import tasks

    d = Path(directory)
    data = read_config(d)
    if data.get("command") != "run":
        raise PolicyGradExError(f"{str(d)!r} holds a `{data.get('command')}` run, not a pipeline run; pass a directory made by `policygradex run`")
    try:
        config = from_data(ResolvedRun, data, "config")
    except PolicyGradExError as e:
        raise PolicyGradExError(f"{config_path(d)} is damaged ({e}); delete {str(d)!r} and start the run again") from None
    family = tasks.make(config.family.factory or config.family.name)
    return Run(family, RunStore(d, family.ref), config, progress or _no_progress)


def run(
    family: TaskFamily,
    cfg: RunConfig,
    out: str | os.PathLike[str],
    progress: Progress | None = None,
    stop_after: Stage = "report",
    threads: int | None = None,
) -> RunResult:
    """Run every stage (resuming finished ones) and return the result.

    Args:
        family: the task family.
        cfg: the run configuration.
        out: the run directory.
        progress: called as ``progress(stage, done, total)``.
        stop_after: last stage to run (:func:`reopen` the directory, or call ``run`` again, to continue).
        threads: torch CPU threads while running (default: :data:`policygradex.threads.DEFAULT_THREADS`);
            the caller's setting is restored afterwards.

    Returns:
        The :class:`RunResult` of the stages run.
    """
    with torch_threads(threads):
        r = open_run(family, cfg, out, progress)
        stages = STAGES[: STAGES.index(stop_after) + 1]
        for stage in stages:
            run_stage(r, stage)  # type: ignore[arg-type]
        n = family.n
        res = RunResult(r.dir, stages)
        if "affinity" in stages:
            res.affinity = r.store.load_affinity(n)
        if "cluster" in stages:
            res.groups = r.store.load_groups(n)
        if "report" in stages:
            tasks = r.store.load_results()["tasks"]
            res.meta_scores = {t["index"]: t["meta"] for t in tasks}
            res.group_scores = {t["index"]: t["group_policy"] for t in tasks}
        return res
