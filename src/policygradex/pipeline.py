"""The PolicyGradEx pipeline as stages over one run directory.

    meta ─► features ─► subsets ─► estimate ─► affinity ─► cluster ─► groups ─► report

Each stage reads what the earlier ones wrote and writes its own artifacts atomically; a stage whose
outputs exist is skipped, so rerunning ``run`` on the same directory resumes a killed run, and the
result is the same as an uninterrupted run (every stage is deterministic given the run's seed).

>>> from policygradex import pipeline, tasks
>>> result = pipeline.run(tasks.make("planted-toy"), pipeline.RunConfig(preset="smoke"), out="runs/toy")
>>> result.groups
[[0, 3], [1, 4], [2, 5]]
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.execute import ExecutorKind, make_executor
from policygradex.io import atomic_path, read_json, write_json, write_npy, write_text
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rl.policy import PolicyConfig
from policygradex.rl.ppo import PPOConfig, ppo_config_for
from policygradex.rundir import open_run_dir
from policygradex.tasks.base import TaskFamily

Preset = Literal["default", "smoke"]
AffinityMode = Literal["task", "aggregate"]
ClusterMethod = Literal["sdp", "spectral", "exhaustive"]
GroupInit = Literal["meta", "scratch"]
STAGES = ("meta", "features", "subsets", "estimate", "affinity", "cluster", "groups", "report")
Stage = Literal["meta", "features", "subsets", "estimate", "affinity", "cluster", "groups", "report"]


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training of θ* on all tasks."""

    total_steps: int | None = None
    """Env steps over all tasks (default: the family's pipeline budget; cartpole-10: 1M)."""
    depth: int = 4
    """Linear layers of actor and critic (paper: 4)."""
    width: int = 64
    """Hidden units per layer."""


@dataclass(frozen=True)
class FeatureConfig:
    """Gradient features (paper §2.2)."""

    samples_per_task: int | None = None
    """Transitions of θ* per task (default 2048 as in the paper; 512 with the smoke preset)."""
    d: int = 400
    """Projection dimension (paper: 400)."""
    envs_per_task: int = 8
    """Parallel environments per task during the feature rollouts."""

    def __post_init__(self) -> None:
        if self.samples_per_task is not None and self.samples_per_task < 1:
            raise ConfigError(f"samples_per_task={self.samples_per_task} must be at least 1")
        if self.d < 1:
            raise ConfigError(f"d={self.d} must be at least 1 (the paper uses 400)")


@dataclass(frozen=True)
class EstimateConfig:
    """Subset sampling, surrogate fits and scores (paper §2.3–2.6)."""

    num_subsets: int | None = None
    """m, the number of random subsets (default: max(50, 2n²); n(n−1)/2 with the smoke preset)."""
    subset_size: int | None = None
    """Tasks per subset (default: max(2, round(n/3)); 3 for n = 10)."""
    min_coverage: int = 3
    """Every pair of tasks must be in at least this many subsets (more are added if needed)."""
    l2: float = 1e-2
    """L2 strength λ of the logistic fit (objective normalised by the total weight)."""
    relative_norm: float | None = 0.05
    """Rescale every Δθ_S to this fraction of ‖θ*‖ (None: keep the fitted norm)."""
    score: Literal["rollout", "surrogate"] = "rollout"
    """How f(S, i) is measured: rollouts of θ* + Δθ_S, or the rollout-free first-order estimate."""
    episodes: int | None = None
    """Rollout episodes per (subset, task) (default 32; 16 with the smoke preset)."""
    affinity: AffinityMode = "task"
    """'task': per-target-task z-scored f(S, i); 'aggregate': the paper's mean of f(S)."""
    chunk: int = 8
    """Subsets per work item (and per resume checkpoint) when scoring by rollouts."""

    def __post_init__(self) -> None:
        if self.num_subsets is not None and self.num_subsets < 1:
            raise ConfigError(f"num_subsets={self.num_subsets} must be at least 1")
        if self.l2 <= 0:
            raise ConfigError(f"l2={self.l2} must be positive")
        if self.relative_norm is not None and self.relative_norm <= 0:
            raise ConfigError(f"relative_norm={self.relative_norm} must be positive, or None to keep the fitted norm")
        if self.episodes is not None and self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes} must be at least 1")
        if self.chunk < 1:
            raise ConfigError(f"chunk={self.chunk} must be at least 1")


@dataclass(frozen=True)
class GroupConfig:
    """Group policies (paper §2.8)."""

    init: GroupInit = "meta"
    """Start each group policy from θ* ('meta') or from scratch ('scratch')."""
    total_steps: int | None = None
    """Env steps per group (default: the meta budget × group size / n, so all groups together cost one meta-training)."""
    lr_scale: float = 0.2
    """Fine-tuning from θ* uses the meta learning rate × lr_scale (cartpole-10: at ×1 fine-tuning lost up to
    270 return on tasks θ* had solved; at ×0.2 every task ended ≥ 490)."""
    eval_episodes: int = 20
    """Evaluation episodes per task for θ* and the group policies."""

    def __post_init__(self) -> None:
        if self.total_steps is not None and self.total_steps < 1:
            raise ConfigError(f"groups.total_steps={self.total_steps} must be a positive integer")
        if self.lr_scale <= 0:
            raise ConfigError(f"groups.lr_scale={self.lr_scale} must be positive")
        if self.eval_episodes < 1:
            raise ConfigError(f"groups.eval_episodes={self.eval_episodes} must be at least 1")


@dataclass(frozen=True)
class RunConfig:
    """Everything a pipeline run depends on; saved resolved as ``config.json``."""

    k: int = 3
    """Number of groups."""
    seed: int = 0
    """Seed of everything random in the run."""
    preset: Preset = "default"
    """'default' budgets, or 'smoke' (about a minute) for trying things out."""
    method: ClusterMethod = "sdp"
    """Clustering: SDP relaxation (paper), spectral clustering, or exhaustive search (n ≤ 12)."""
    meta: MetaConfig = field(default_factory=MetaConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    groups: GroupConfig = field(default_factory=GroupConfig)
    executor: ExecutorKind = "serial"
    """Where subset scoring and group training run: 'serial' or local 'process'es."""
    workers: int = 2
    """Worker processes for the 'process' executor."""

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k={self.k} must be at least 1")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")


def resolve(family: TaskFamily, cfg: RunConfig) -> dict[str, Any]:
    """The resolved configuration: every default filled in for this family, as plain data."""
    from policygradex.gradex.subsets import default_num_subsets

    n = family.n
    if cfg.k > n:
        raise ConfigError(f"k={cfg.k} is larger than the family's {n} tasks; choose k ≤ {n}")
    smoke = cfg.preset == "smoke"
    # A family may suggest a shorter meta-training for the pipeline than for `train` ("meta" budget):
    # θ* trained to saturation leaves no room for subsets to differ, and the estimates carry no signal.
    budget = "meta" if cfg.preset == "default" and "meta" in family.train_steps else cfg.preset
    meta_ppo = ppo_config_for(family, budget, total_steps=cfg.meta.total_steps)
    meta_ppo.num_iterations(n)
    size = cfg.estimate.subset_size if cfg.estimate.subset_size is not None else max(2, round(n / 3))
    if not 2 <= size <= n:
        raise ConfigError(f"subset_size={size} must lie in [2, {n}] for a family of {n} tasks")
    est = replace(
        cfg.estimate,
        num_subsets=cfg.estimate.num_subsets or (n * (n - 1) // 2 if smoke else default_num_subsets(n)),
        subset_size=size,
        episodes=cfg.estimate.episodes or (16 if smoke else 32),
    )
    feats = replace(cfg.features, samples_per_task=cfg.features.samples_per_task or (512 if smoke else 2048))
    return {
        "command": "run",
        "family": family.info(),
        "k": cfg.k,
        "seed": cfg.seed,
        "preset": cfg.preset,
        "method": cfg.method,
        "meta": {"ppo": asdict(meta_ppo), "policy": asdict(PolicyConfig(depth=cfg.meta.depth, width=cfg.meta.width))},
        "features": asdict(feats),
        "estimate": asdict(est),
        "groups": asdict(cfg.groups),
        "executor": cfg.executor,
        "workers": cfg.workers,
    }


@dataclass
class RunResult:
    """What a finished run produced (also in ``results.json``)."""

    directory: Path
    groups: list[list[int]]
    affinity: np.ndarray
    meta_scores: dict[int, float]
    group_scores: dict[int, float]


Progress = Callable[[str, int, int], None]


class Run:
    """A run directory and its resolved configuration; each stage is a method.

    Args:
        family: the task family.
        directory: the run directory (created with ``config.json`` by :func:`open`).
        config: the resolved configuration (see :func:`resolve`).
        progress: called as ``progress(stage, done, total)`` during long stages.
    """

    def __init__(self, family: TaskFamily, directory: Path, config: dict[str, Any], progress: Progress | None = None) -> None:
        self.family = family
        self.dir = directory
        self.config = config
        self.progress = progress or (lambda stage, done, total: None)
        self.seed = int(config["seed"])
        self.timings: dict[str, float] = {}

    # ---- helpers -------------------------------------------------------------------------------
    def _seed(self, stage: str) -> int:
        return int(np.random.SeedSequence([self.seed, STAGES.index(stage)]).generate_state(1)[0] % (2**31))

    def _require(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise PolicyGradExError(
                f"{path} is missing; run `policygradex {stage} --run {self.dir}` (or `policygradex run`) first"
            )
        return path

    @property
    def meta_ppo(self) -> PPOConfig:
        return PPOConfig(**self.config["meta"]["ppo"])

    @property
    def meta_checkpoint(self) -> Path:
        return self.dir / "meta" / "policy.pt"

    # ---- stages --------------------------------------------------------------------------------
    def stage_meta(self) -> None:
        """Meta-train θ* on all n tasks (``meta/``)."""
        from policygradex.training import train_into

        policy_cfg = PolicyConfig(**self.config["meta"]["policy"])
        train_into(
            self.dir / "meta", self.family, range(self.family.n), self.meta_ppo, policy_cfg, self._seed("meta"),
            self.config["groups"]["eval_episodes"],
            progress=lambda it, total, m: self.progress("meta", it, total),
        )

    def stage_features(self) -> None:
        """Roll out θ*, compute projected per-sample gradients (``features/task_<i>.pt``)."""
        from policygradex.gradex.features import collect_features, flatten
        from policygradex.gradex.projection import GaussianProjection

        out = self.dir / "features"
        if all((out / f"task_{i}.pt").exists() for i in range(self.family.n)):
            return
        ckpt = load_checkpoint(self._require(self.meta_checkpoint, "meta"), self.family)
        fc = self.config["features"]
        p = flatten(ckpt.policy.actor_params()).numel()
        proj = GaussianProjection(p=p, d=fc["d"], seed=self._seed("features"))
        ppo = self.meta_ppo
        start = time.perf_counter()
        feats = collect_features(
            ckpt.policy, self.family, proj, fc["samples_per_task"], self._seed("features") + 1,
            envs_per_task=fc["envs_per_task"], gamma=ppo.gamma, lam=ppo.gae_lambda,
        )
        for i, f in feats.items():
            with atomic_path(out / f"task_{i}.pt") as tmp:
                torch.save(f.to_dict(), tmp)
        write_json(out / "projection.json", {
            "p": p, "d": fc["d"], "seed": proj.seed, "kind": "gaussian", "seconds": time.perf_counter() - start,
        })

    def load_features(self) -> dict[int, dict[str, torch.Tensor]]:
        """The stored features of every task."""
        d = self.dir / "features"
        return {
            i: torch.load(self._require(d / f"task_{i}.pt", "features"), weights_only=True) for i in range(self.family.n)
        }

    def stage_subsets(self) -> None:
        """Sample the m subsets, each with its own seed (``subsets.json``)."""
        from policygradex.gradex.subsets import coverage, sample_subsets

        path = self.dir / "subsets.json"
        if path.exists():
            return
        e = self.config["estimate"]
        n = self.family.n
        # enough top-up room to cover every pair min_coverage times even if sampling covered none
        extra = e["num_subsets"] + e["min_coverage"] * n * (n - 1) // 2
        subsets = sample_subsets(
            n, e["num_subsets"], e["subset_size"], self._seed("subsets"), min_coverage=e["min_coverage"], max_extra=extra
        )
        cov = coverage(subsets, self.family.n)
        write_json(path, {
            "subsets": [{"index": s.index, "tasks": list(s.tasks), "seed": s.seed} for s in subsets],
            "min_pair_coverage": int(cov[~np.eye(self.family.n, dtype=bool)].min()) if self.family.n > 1 else 0,
        })

    def load_subsets(self) -> list[tuple[int, ...]]:
        """The subsets' task tuples, in index order."""
        data = read_json(self._require(self.dir / "subsets.json", "subsets"))
        return [tuple(s["tasks"]) for s in data["subsets"]]

    def stage_estimate(self) -> None:
        """Fit Δθ_S for every subset and score f(S, i) (``estimate/weights.pt``, ``scores.jsonl``)."""
        from policygradex.gradex.surrogate import fit_subsets

        if (self.dir / "scores.jsonl").exists():
            return
        e = self.config["estimate"]
        subsets = self.load_subsets()
        feats = self.load_features()
        n = self.family.n
        wpath = self.dir / "estimate" / "weights.pt"
        if wpath.exists():
            weights = torch.load(wpath, weights_only=True)
        else:
            t = time.perf_counter()
            weights = fit_subsets(
                [feats[i]["grads"] for i in range(n)], [feats[i]["advantages"] for i in range(n)], subsets, e["l2"]
            )
            with atomic_path(wpath) as tmp:
                torch.save(weights, tmp)
            write_json(self.dir / "estimate" / "fit.json", {"seconds": time.perf_counter() - t, "subsets": len(subsets)})
        deltas, coef_scale = self._deltas(weights)
        if e["score"] == "surrogate":
            from policygradex.gradex.scores import score_surrogate

            base = read_json(self._require(self.dir / "meta" / "eval.json", "meta"))
            base_scores = [self._metric_of(base)[i] for i in range(n)]
            table = score_surrogate(
                weights, subsets, [feats[i]["grads"] for i in range(n)], [feats[i]["advantages"] for i in range(n)],
                base_scores, coef_scale,
            )
            rows = [(l, i, float(table[l, i])) for l, s in enumerate(subsets) for i in s]
        else:
            rows = self._score_rollouts(subsets, deltas, e)
        lines = [json.dumps({"subset": l, "task": i, "score": v, "mode": e["score"]}) for l, i, v in rows]
        write_text(self.dir / "scores.jsonl", "\n".join(lines) + "\n")

    def _metric_of(self, eval_json: dict[str, Any]) -> dict[int, float]:
        key = "success_rate" if self.family.metric == "success" else "mean_return"
        return {int(k): float(v) for k, v in eval_json[key].items()}

    def _deltas(self, weights: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """Δθ_S = P w_S, rescaled to ``relative_norm``·‖θ*‖; also the factor applied to each w_S."""
        from policygradex.gradex.features import flatten
        from policygradex.gradex.projection import GaussianProjection
        from policygradex.gradex.scores import scale_deltas

        pj = read_json(self.dir / "features" / "projection.json")
        proj = GaussianProjection(p=pj["p"], d=pj["d"], seed=pj["seed"])
        raw = proj.lift(weights.float())
        ckpt = load_checkpoint(self.meta_checkpoint, self.family)
        theta_norm = float(flatten(ckpt.policy.actor_params()).norm())
        scaled = scale_deltas(raw, theta_norm, self.config["estimate"]["relative_norm"])
        factor = scaled.norm(dim=1) / raw.norm(dim=1).clamp_min(1e-12)
        return scaled.numpy().astype(np.float32), factor

    def _score_rollouts(self, subsets: list[tuple[int, ...]], deltas: np.ndarray, e: dict[str, Any]) -> list[tuple[int, int, float]]:
        """Score distinct subsets by rollouts in chunks through the executor, one file per chunk.

        Equal subsets have equal Δθ and, with common random numbers, equal scores: each distinct
        subset is scored once. Finished chunks are kept, so a killed stage resumes where it stopped.
        """
        from policygradex.gradex.scores import ScoreJob, score_rollouts
        from policygradex.gradex.subsets import first_occurrences

        first = first_occurrences(subsets)
        distinct = sorted(first.values())
        chunk_dir = self.dir / "estimate" / "chunks"
        size = int(e["chunk"])
        starts = list(range(0, len(distinct), size))
        todo = [c for c in starts if not (chunk_dir / f"chunk_{c:05d}.json").exists()]
        jobs = [
            ScoreJob(
                checkpoint=str(self.meta_checkpoint), family=self.family.name,
                subsets=tuple((l, subsets[l]) for l in distinct[c : c + size]),
                deltas=deltas[distinct[c : c + size]], episodes=int(e["episodes"]), seed=self._seed("estimate"),
            )
            for c in todo
        ]
        executor = make_executor(self.config["executor"], self.config["workers"])
        done = len(starts) - len(todo)
        self.progress("estimate", done, len(starts))
        for c, res in zip(todo, executor.map(score_rollouts, jobs), strict=True):
            write_json(chunk_dir / f"chunk_{c:05d}.json", {"rows": [list(r) for r in res["rows"]], "seconds": res["seconds"]})
            done += 1
            self.progress("estimate", done, len(starts))
        scored: dict[tuple[int, int], float] = {}
        for c in starts:
            for a, b, v in read_json(chunk_dir / f"chunk_{c:05d}.json")["rows"]:
                scored[(int(a), int(b))] = float(v)
        return [(l, i, scored[(first[s], i)]) for l, s in enumerate(subsets) for i in s]

    def estimate_compute_seconds(self) -> dict[str, float]:
        """Compute time the estimate took, summed over work items (resume-proof: recorded when done)."""
        out = {
            "features": float(read_json(self.dir / "features" / "projection.json")["seconds"]),
            "fits": float(read_json(self._require(self.dir / "estimate" / "fit.json", "estimate"))["seconds"]),
        }
        chunks = sorted((self.dir / "estimate" / "chunks").glob("chunk_*.json"))
        out["scoring"] = float(sum(read_json(c)["seconds"] for c in chunks))
        out["total"] = out["features"] + out["fits"] + out["scoring"]
        return out

    def load_scores(self, path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """scores [m, n] (NaN outside the subset) and membership [m, n], from ``scores.jsonl`` (or ``path``)."""
        from policygradex.gradex.subsets import membership

        subsets = self.load_subsets()
        n = self.family.n
        scores = np.full((len(subsets), n), np.nan)
        for line in self._require(path or self.dir / "scores.jsonl", "estimate").read_text().splitlines():
            r = json.loads(line)
            scores[r["subset"], r["task"]] = r["score"]
        return scores, membership(subsets, n)

    def stage_affinity(self) -> None:
        """Build U from the scores in both modes (``affinity.npy`` = configured mode, ``coverage.npy``)."""
        from policygradex.gradex.affinity import affinity

        if (self.dir / "affinity.npy").exists():
            return
        scores, membership = self.load_scores()
        mode = self.config["estimate"]["affinity"]
        for m in ("task", "aggregate"):
            U, cov = affinity(scores, membership, m)
            write_npy(self.dir / f"affinity_{m}.npy", U)
        write_npy(self.dir / "coverage.npy", cov)
        write_npy(self.dir / "affinity.npy", np.load(self.dir / f"affinity_{mode}.npy"))

    def stage_cluster(self) -> None:
        """Partition the tasks into k groups (``groups.json``)."""
        from policygradex.grouping.cluster import exhaustive_cluster, sdp_cluster, spectral_cluster

        path = self.dir / "groups.json"
        if path.exists():
            return
        U = np.load(self._require(self.dir / "affinity.npy", "affinity"))
        k, method = int(self.config["k"]), self.config["method"]
        if method == "sdp":
            res = sdp_cluster(U, k=k)
        elif method == "spectral":
            res = spectral_cluster(U, k, seed=self.seed)
        else:
            res = exhaustive_cluster(U, k)
        write_json(path, {
            "groups": [list(map(int, g)) for g in res.groups], "method": method, "k": k,
            "objective": float(res.objective), "affinity": self.config["estimate"]["affinity"],
        })

    def load_groups(self) -> list[list[int]]:
        """The partition."""
        return read_json(self._require(self.dir / "groups.json", "cluster"))["groups"]

    def stage_groups(self) -> None:
        """Train one policy per group (``groups/<g>/policy.pt`` and ``eval.json``)."""
        self.train_groups(self.load_groups(), self.dir / "groups", "groups")

    def train_groups(self, groups: list[list[int]], directory: Path, stage: str) -> dict[int, float]:
        """Train one policy per group into ``directory/<g>`` (resuming finished ones) and return every
        task's score under its group's policy. Used for the estimated grouping and for the baselines."""
        gc = self.config["groups"]
        if gc["init"] == "meta":
            self._require(self.meta_checkpoint, "meta")
        jobs = [
            GroupJob(
                directory=str(directory / str(g)), family=self.family.name, tasks=tuple(members),
                ppo=asdict(self._group_ppo(len(members))), policy=self.config["meta"]["policy"],
                seed=int(np.random.SeedSequence([self.seed, 99, g]).generate_state(1)[0] % (2**31)),
                eval_episodes=int(gc["eval_episodes"]),
                init=str(self.meta_checkpoint) if gc["init"] == "meta" else None,
            )
            for g, members in enumerate(groups)
        ]
        executor = make_executor(self.config["executor"], self.config["workers"])
        self.progress(stage, 0, len(jobs))
        for j, _ in enumerate(executor.map(train_group, jobs)):
            self.progress(stage, j + 1, len(jobs))
        scores: dict[int, float] = {}
        for g, members in enumerate(groups):
            ev = self._metric_of(read_json(directory / str(g) / "eval.json"))
            scores.update({i: ev[i] for i in members})
        return scores

    def _group_ppo(self, size: int) -> PPOConfig:
        steps = self.config["groups"]["total_steps"]
        if steps is None:
            steps = max(self.meta_ppo.batch_size(size), self.meta_ppo.total_steps * size // self.family.n)
        gc = self.config["groups"]
        lr = self.meta_ppo.learning_rate * (gc["lr_scale"] if gc["init"] == "meta" else 1.0)
        return replace(self.meta_ppo, total_steps=int(steps), learning_rate=lr)

    def results(self) -> dict[str, Any]:
        """Per-task scores of θ* alone and of the group policies."""
        meta = self._metric_of(read_json(self._require(self.dir / "meta" / "eval.json", "meta")))
        groups = self.load_groups()
        group_of, group_scores = {}, {}
        for g, members in enumerate(groups):
            ev = self._metric_of(read_json(self._require(self.dir / "groups" / str(g) / "eval.json", "groups")))
            for i in members:
                group_of[i] = g
                group_scores[i] = ev[i]
        n = self.family.n
        return {
            "family": self.family.full_name,
            "metric": self.family.metric,
            "k": int(self.config["k"]),
            "groups": groups,
            "num_subsets": len(self.load_subsets()),
            "score_mode": self.config["estimate"]["score"],
            "affinity_mode": self.config["estimate"]["affinity"],
            "planted_groups": [list(g) for g in self.family.planted_groups] if self.family.planted_groups else None,
            "tasks": [
                {"index": i, "name": self.family.tasks[i].name, "group": group_of[i], "meta": meta[i], "group_policy": group_scores[i]}
                for i in range(n)
            ],
            "mean_meta": float(np.mean([meta[i] for i in range(n)])),
            "mean_group_policy": float(np.mean([group_scores[i] for i in range(n)])),
        }

    def stage_report(self) -> None:
        """Write ``results.json``, ``figures/affinity.png`` and ``report.md``."""
        from policygradex.report import write_report

        res = self.results()
        write_json(self.dir / "results.json", res)
        write_report(self.dir, res, np.load(self.dir / "affinity.npy"), np.load(self.dir / "coverage.npy"), self.config)

    def run_stage(self, stage: Stage) -> None:
        """Run one stage (skipped if its outputs exist)."""
        t = time.perf_counter()
        getattr(self, f"stage_{stage}")()
        self.timings[stage] = time.perf_counter() - t


@dataclass(frozen=True)
class GroupJob:
    """One group policy to train (picklable, for any executor)."""

    directory: str
    family: str
    tasks: tuple[int, ...]
    ppo: dict[str, Any]
    policy: dict[str, Any]
    seed: int
    eval_episodes: int
    init: str | None


def train_group(job: GroupJob) -> str:
    """Train (or resume) one group policy; returns its directory."""
    from policygradex import tasks
    from policygradex.training import train_into

    family = tasks.make(job.family)
    init = load_checkpoint(job.init, family).policy if job.init else None
    train_into(
        job.directory, family, job.tasks, PPOConfig(**job.ppo), PolicyConfig(**job.policy), job.seed,
        job.eval_episodes, init=init,
    )
    return job.directory


def open_run(
    family: TaskFamily, cfg: RunConfig, out: str | os.PathLike[str], progress: Progress | None = None
) -> Run:
    """Create (or reopen, for the same configuration) the run directory ``out``."""
    config = resolve(family, cfg)
    directory = open_run_dir(out, config)
    return Run(family, directory, config, progress)


def reopen(directory: str | os.PathLike[str], progress: Progress | None = None) -> Run:
    """Open an existing run directory with its saved configuration."""
    from policygradex import tasks

    d = Path(directory)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise PolicyGradExError(f"{str(d)!r} holds no run (no config.json); start one with `policygradex run --out {d}`")
    config = read_json(cfg_path)
    if config.get("command") != "run":
        raise PolicyGradExError(f"{str(d)!r} holds a `{config.get('command')}` run, not a pipeline run; pass a directory made by `policygradex run`")
    family = tasks.make(config["family"]["name"])
    return Run(family, d, config, progress)


def run(
    family: TaskFamily,
    cfg: RunConfig,
    out: str | os.PathLike[str],
    progress: Progress | None = None,
    stop_after: Stage = "report",
) -> RunResult:
    """Run every stage (resuming finished ones) and return the result.

    Args:
        family: the task family.
        cfg: the run configuration.
        out: the run directory.
        progress: called as ``progress(stage, done, total)``.
        stop_after: last stage to run.
    """
    r = open_run(family, cfg, out, progress)
    for stage in STAGES[: STAGES.index(stop_after) + 1]:
        r.run_stage(stage)  # type: ignore[arg-type]
    if stop_after != "report":
        return RunResult(r.dir, [], np.zeros(0), {}, {})
    res = read_json(r.dir / "results.json")
    return RunResult(
        r.dir,
        res["groups"],
        np.load(r.dir / "affinity.npy"),
        {t["index"]: t["meta"] for t in res["tasks"]},
        {t["index"]: t["group_policy"] for t in res["tasks"]},
    )

