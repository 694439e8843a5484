"""Typed configuration: what a user sets (:class:`RunConfig`) and what a run resolves it to
(:class:`ResolvedRun`, a frozen dataclass tree written out in full as ``config.json``).

``resolve(family, cfg)`` fills every default for a family; :func:`to_data` / :func:`from_data`
convert a config tree to plain JSON data and back into the same types, checking every field, so a
``config.json`` read back is typed again (never a ``dict`` read with string keys).

Seeds: every random stream of a run is :func:`derive_seed` of the run's seed and a fixed key path, so
the same run seed gives the same artifacts whatever executor runs the work.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

from policygradex.errors import ConfigError
from policygradex.execute import ExecutorKind
from policygradex.gradex.affinity import AffinityMode
from policygradex.gradex.projection import ProjectionKind
from policygradex.gradex.scores import ScoreMode
from policygradex.rl.policy import Arch, PolicyConfig, policy_config_for
from policygradex.rl.ppo import PPOConfig, ppo_config_for
from policygradex.tasks.base import TaskFamily

Preset = Literal["default", "smoke"]
ClusterMethod = Literal["sdp", "spectral", "exhaustive"]
GroupInit = Literal["meta", "scratch"]
BudgetRule = Literal["proportional", "equal"]
STAGES = ("meta", "features", "subsets", "estimate", "affinity", "cluster", "groups", "report")
Stage = Literal["meta", "features", "subsets", "estimate", "affinity", "cluster", "groups", "report"]

# ---- seeds ---------------------------------------------------------------------------------------
# Fixed keys of derive_seed beside a stage's index in STAGES. Changing one changes every artifact
# that depends on it, so they are constants, written down once.
GROUP_SEED_KEY = 99
"""derive_seed(run_seed, GROUP_SEED_KEY, g): the PPO seed of group policy g (estimated and baseline groupings)."""
TRUTH_SEED_KEY = 4242
"""derive_seed(run_seed, TRUTH_SEED_KEY, l): the PPO seed of the ground-truth fine-tuning of subset l
(derive_seed(run_seed, TRUTH_SEED_KEY, l, s) for the truth replicate with seed s > 0)."""
TRUTH_EVAL_SEED_KEY = 1_000_000
"""derive_seed(run_seed, TRUTH_SEED_KEY, TRUTH_EVAL_SEED_KEY, s): evaluation seed of truth replicate s > 0
(replicate 0 is scored with the estimate's own episodes)."""

META_RL_SEED_KEY = 1313
"""derive_seed(run_seed, META_RL_SEED_KEY, s, ...): the streams of seed s of the meta-RL protocol (issue 13):
MAML training of each group, random groupings, adaptation, evaluation and Hessian probes."""


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is a valid seed (an integer ≥ 0), else a one-line ConfigError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{name}={seed!r} must be an integer ≥ 0")
    return seed


def derive_seed(run_seed: int, *keys: int) -> int:
    """A seed in [0, 2³¹) for the stream named by ``keys`` within a run seeded ``run_seed``.

    ``numpy.random.SeedSequence([run_seed, *keys])``: distinct key paths give independent streams.
    """
    return int(np.random.SeedSequence([int(run_seed), *map(int, keys)]).generate_state(1)[0] % (2**31))


def stage_seed(run_seed: int, stage: Stage) -> int:
    """The seed of a pipeline stage (its index in :data:`STAGES` is the key)."""
    return derive_seed(run_seed, STAGES.index(stage))


def random_partition_seed(run_seed: int, s: int) -> int:
    """Seed of the ``s``-th random grouping of ``compare-groupings``."""
    return int(run_seed) * 1000 + int(s)


DEFAULT_TAG_EVERY = 10
"""meta.tag_every: the TAG lookahead every 10th PPO update (cartpole-10: 20 of the 195 updates)."""


# ---- what the user sets --------------------------------------------------------------------------
def _finite(name: str, v: float | None) -> None:
    if v is not None and not math.isfinite(v):
        raise ConfigError(f"{name}={v} must be a finite number")


@dataclass(frozen=True)
class MetaConfig:
    """Meta-training of θ* on all tasks."""

    total_steps: int | None = None
    """Env steps over all tasks (default: the family's pipeline budget; cartpole-10: 1M)."""
    depth: int = 4
    """Linear layers of actor and critic (paper: 4)."""
    width: int = 64
    """Hidden units per layer."""
    arch: Arch = "mlp"
    """Policy network of every learner (meta-training, groups, ground truth): 'mlp' (plain MLP on state +
    one-hot id), 'sm' (Soft Modularization), 'care' (CARE), 'paco' (PaCo), 'moore' (MOORE)."""
    experts: int | None = None
    """Modules per layer (sm, default 2), state encoders (care, 6), parameter sets (paco, 5) or experts
    (moore, 4); not used by mlp."""
    obs_norm: bool | None = None
    """Normalise observations (not the task id) by running mean and variance, clipped to ±10, in every
    learner's policy (None: the family's preset; on for metaworld-*, off elsewhere)."""
    tag_every: int = DEFAULT_TAG_EVERY
    """Compute TAG's lookahead affinity every K PPO updates of the meta-training and average it, for the
    `tag` baseline of compare-groupings (0: off). It changes no weight of θ*."""
    from_sb3: str | None = None
    """A Stable-Baselines3 PPO model (.zip) trained on this family (policygradex.rl.sb3.make_sb3_env) to use as
    θ* instead of meta-training; its architecture replaces depth and width (extra sb3)."""

    def __post_init__(self) -> None:
        if self.total_steps is not None and self.total_steps < 1:
            raise ConfigError(f"meta.total_steps={self.total_steps} must be a positive integer")
        if self.depth < 1 or self.width < 1:
            raise ConfigError(f"meta.depth={self.depth} and meta.width={self.width} must be at least 1")
        try:
            self.policy()
        except ConfigError as e:
            raise ConfigError(f"meta.{e}") from None
        if self.from_sb3 is not None and self.arch != "mlp":
            raise ConfigError(
                f"meta.from_sb3 imports a Stable-Baselines3 MLP, which cannot be meta.arch={self.arch!r}; "
                "leave meta.arch at 'mlp' with meta.from_sb3"
            )
        if isinstance(self.tag_every, bool) or not isinstance(self.tag_every, int) or self.tag_every < 0:
            raise ConfigError(
                f"meta.tag_every={self.tag_every!r} must be an integer ≥ 0 (PPO updates between two TAG lookaheads; 0 turns them off)"
            )

    def policy(self, family: TaskFamily | None = None) -> PolicyConfig:
        """The architecture these settings give for ``family`` (the architecture's default filled into
        ``experts``; the family's ``policy_overrides`` where a setting is None; without a family, the
        library defaults)."""
        settings: dict[str, Any] = {
            "depth": self.depth, "width": self.width, "arch": self.arch, "experts": self.experts, "obs_norm": self.obs_norm,
        }
        if family is None:
            return PolicyConfig(**{k: v for k, v in settings.items() if v is not None})
        return policy_config_for(family, **settings)


@dataclass(frozen=True)
class FeatureConfig:
    """Gradient features (paper §2.2)."""

    samples_per_task: int | None = None
    """Transitions of θ* per task (default 2048 as in the paper; 512 with the smoke preset)."""
    d: int = 400
    """Projection dimension (paper: 400)."""
    envs_per_task: int = 8
    """Parallel environments per task during the feature rollouts."""
    projection: ProjectionKind = "gaussian"
    """How per-sample gradients are projected to d dimensions: 'gaussian' (the paper's dense p×d Gaussian
    matrix, applied to vmapped per-sample gradients) or 'kronecker' (a structured Khatri–Rao sketch per
    Linear layer from one batched backward, never forming a per-sample gradient; MLP actors only)."""

    def __post_init__(self) -> None:
        if self.projection not in ("gaussian", "kronecker"):
            raise ConfigError(f"features.projection={self.projection!r} must be 'gaussian' or 'kronecker'")
        if self.samples_per_task is not None and self.samples_per_task < 1:
            raise ConfigError(f"samples_per_task={self.samples_per_task} must be at least 1")
        if self.d < 1:
            raise ConfigError(f"d={self.d} must be at least 1 (the paper uses 400)")
        if self.envs_per_task < 1:
            raise ConfigError(f"features.envs_per_task={self.envs_per_task} must be at least 1")


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
    score: ScoreMode = "surrogate"
    """How f(S, i) is measured: 'surrogate' (rollout-free first-order estimate of the return; the default,
    chosen by the estimator study: on cartpole-10 its grouping's NMI to the ground truth is 0.885 over 5 seeds
    against 0.700 with rollouts, at a fraction of the compute), 'rollout' (returns of θ* + Δθ_S, the paper's
    policy evaluation) or 'objective' (first-order change of each task's surrogate objective, with centred
    advantages; needs no change in the raw return)."""
    episodes: int | None = None
    """Rollout episodes per (subset, task) (default 32; 16 with the smoke preset)."""
    affinity: AffinityMode = "task"
    """'task': per-target-task z-scored f(S, i); 'aggregate': the paper's mean of f(S); 'regression':
    a ridge fit f(S, i) = b_i + Σ_j a_ij over the subsets (task modeling)."""
    chunk: int = 8
    """Subsets per work item (and per resume checkpoint) when scoring by rollouts."""

    def __post_init__(self) -> None:
        _finite("l2", self.l2)
        _finite("relative_norm", self.relative_norm)
        if self.num_subsets is not None and self.num_subsets < 1:
            raise ConfigError(f"num_subsets={self.num_subsets} must be at least 1")
        if self.min_coverage < 0:
            raise ConfigError(f"min_coverage={self.min_coverage} must be non-negative")
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
    """Env steps per group (default: set by ``budget``; all groups together cost one meta-training)."""
    budget: BudgetRule = "proportional"
    """Without total_steps: 'proportional' gives a group the meta budget × its size / n; 'equal' gives
    every group the meta budget / k."""
    lr_scale: float = 0.2
    """Fine-tuning from θ* uses the meta learning rate × lr_scale (cartpole-10: at ×1 fine-tuning lost up to
    270 return on tasks θ* had solved; at ×0.2 every task ended ≥ 490)."""
    eval_episodes: int = 20
    """Evaluation episodes per task for θ* and the group policies."""

    def __post_init__(self) -> None:
        _finite("groups.lr_scale", self.lr_scale)
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
    """Where subset scoring, group training and the studies' fine-tunings run: 'serial', local 'process'es,
    or 'ray' (extra ray: a local Ray, or the cluster of --ray-address); the results are the same."""
    workers: int = 2
    """Worker processes for 'process'; the CPUs of the local Ray for 'ray' (a cluster brings its own)."""

    def __post_init__(self) -> None:
        check_seed(self.seed)
        if self.k < 1:
            raise ConfigError(f"k={self.k} must be at least 1")
        if self.workers < 1:
            raise ConfigError(f"workers={self.workers} must be at least 1")


# ---- what a run resolves it to -------------------------------------------------------------------
@dataclass(frozen=True)
class TaskInfo:
    """One task of a family, as recorded in a run."""

    index: int
    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class FamilyInfo:
    """The family a run was made on (``TaskFamily.info()``)."""

    name: str
    version: str
    n: int
    obs_dim: int
    action_space: str
    metric: str
    source: str
    tasks: tuple[TaskInfo, ...]
    factory: str | None = None
    """``package.module:factory`` for a family built from that string (rebuilt from it by ``reopen``)."""

    @classmethod
    def of(cls, family: TaskFamily) -> FamilyInfo:
        """The record of ``family``."""
        return from_data(cls, family.info())


@dataclass(frozen=True)
class ResolvedMeta:
    """Meta-training as run: PPO budget and hyperparameters, the policy architecture, and how often the
    TAG lookahead was recorded; or the Stable-Baselines3 model imported as θ* (its path and SHA-256, so
    another model is another run)."""

    ppo: PPOConfig
    policy: PolicyConfig
    tag_every: int | None = None
    """PPO updates between two TAG lookaheads (0: none, also for an imported θ*); None in a ``config.json``
    written before the setting existed, whose meta-training recorded none."""
    sb3_model: str | None = None
    sb3_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.tag_every is not None and self.tag_every < 0:
            raise ConfigError(f"meta.tag_every={self.tag_every} must be ≥ 0 (0 turns the TAG lookahead off)")


@dataclass(frozen=True)
class ResolvedFeatures:
    """:class:`FeatureConfig` with every default filled in."""

    samples_per_task: int
    d: int
    envs_per_task: int
    projection: ProjectionKind = "gaussian"  # runs made before issue 11 have no such key: Gaussian


@dataclass(frozen=True)
class ResolvedEstimate:
    """:class:`EstimateConfig` with every default filled in."""

    num_subsets: int
    subset_size: int
    min_coverage: int
    l2: float
    relative_norm: float | None
    score: ScoreMode
    episodes: int
    affinity: AffinityMode
    chunk: int


@dataclass(frozen=True)
class ResolvedRun:
    """The resolved configuration of a pipeline run (``config.json``)."""

    command: Literal["run"]
    family: FamilyInfo
    k: int
    seed: int
    preset: Preset
    method: ClusterMethod
    meta: ResolvedMeta
    features: ResolvedFeatures
    estimate: ResolvedEstimate
    groups: GroupConfig
    executor: ExecutorKind
    workers: int


def resolve(family: TaskFamily, cfg: RunConfig) -> ResolvedRun:
    """Every default of ``cfg`` filled in for ``family``.

    Raises:
        ConfigError: a value that does not fit this family (k > n, a budget below one rollout, ...).
    """
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
    e = cfg.estimate
    est = ResolvedEstimate(
        num_subsets=e.num_subsets or (n * (n - 1) // 2 if smoke else default_num_subsets(n)),
        subset_size=size, min_coverage=e.min_coverage, l2=e.l2, relative_norm=e.relative_norm, score=e.score,
        episodes=e.episodes or (16 if smoke else 32), affinity=e.affinity, chunk=e.chunk,
    )
    feats = ResolvedFeatures(
        samples_per_task=cfg.features.samples_per_task or (512 if smoke else 2048),
        d=cfg.features.d, envs_per_task=cfg.features.envs_per_task, projection=cfg.features.projection,
    )
    gc = cfg.groups
    largest = n - cfg.k + 1  # the largest group a partition into k non-empty groups can hold
    if gc.total_steps is not None and gc.total_steps < meta_ppo.batch_size(largest):
        raise ConfigError(
            f"groups.total_steps={gc.total_steps} is less than one rollout for a group of up to {largest} tasks "
            f"({meta_ppo.batch_size(largest)} steps); raise it"
        )
    meta = ResolvedMeta(ppo=meta_ppo, policy=cfg.meta.policy(family), tag_every=cfg.meta.tag_every)
    if cfg.meta.from_sb3 is not None:
        import hashlib
        import os

        from policygradex.rl.sb3 import read_architecture

        path = os.path.abspath(cfg.meta.from_sb3)
        policy = read_architecture(path, family)  # an unmappable model is refused here, before any work
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        meta = ResolvedMeta(ppo=meta_ppo, policy=policy, tag_every=0, sb3_model=path, sb3_sha256=digest)
    if feats.projection == "kronecker":
        _check_kronecker(family, meta.policy)
    return ResolvedRun(
        command="run", family=FamilyInfo.of(family), k=cfg.k, seed=cfg.seed, preset=cfg.preset, method=cfg.method,
        meta=meta,
        features=feats, estimate=est, groups=cfg.groups, executor=cfg.executor, workers=cfg.workers,
    )


def _check_kronecker(family: TaskFamily, policy: PolicyConfig) -> None:
    """Refuse, before any work, an actor the kronecker projection cannot decompose (one clear sentence)."""
    from policygradex.gradex.projection import kronecker_blocks
    from policygradex.rl.policy import build_policy

    skeleton = build_policy(family.obs_dim, family.action_dim, family.discrete, policy, seed=0, task_dim=family.onehot_size)
    kronecker_blocks(skeleton.actor)


def group_budget(config: ResolvedRun, size: int, k: int, rule: BudgetRule | None = None) -> int:
    """Env steps of one group of ``size`` tasks in a partition into ``k`` groups, by ``rule`` (default:
    ``groups.budget``): 'proportional' (:func:`subset_budget`) or 'equal' (the meta budget / k); at
    least one rollout either way, so a partition costs about one meta-training."""
    if (rule or config.groups.budget) == "proportional":
        return subset_budget(config, size)
    meta = config.meta.ppo
    return max(meta.batch_size(size), meta.total_steps // k)


def subset_budget(config: ResolvedRun, size: int) -> int:
    """Default env steps for training ``size`` tasks: the meta budget × size / n (so all groups of a
    partition together cost one meta-training), and at least one rollout."""
    meta = config.meta.ppo
    return max(meta.batch_size(size), meta.total_steps * size // config.family.n)


def group_ppo(config: ResolvedRun, size: int, k: int | None = None, rule: BudgetRule | None = None) -> PPOConfig:
    """PPO settings of a group policy of ``size`` tasks in a partition into ``k`` groups (default: the
    run's k): ``groups.total_steps`` or :func:`group_budget` env steps; from θ* at the meta learning
    rate × ``groups.lr_scale``, from scratch at the meta one."""
    meta, gc = config.meta.ppo, config.groups
    if gc.total_steps is not None:
        steps = gc.total_steps
    else:
        steps = group_budget(config, size, k or config.k, rule)
    lr = meta.learning_rate * (gc.lr_scale if gc.init == "meta" else 1.0)
    return replace(meta, total_steps=int(steps), learning_rate=lr)


def fine_tune_ppo(config: ResolvedRun, size: int, total_steps: int | None = None) -> PPOConfig:
    """PPO settings for fine-tuning θ* on a subset of ``size`` tasks (the ground truth): ``total_steps``
    or :func:`subset_budget` env steps at the meta learning rate × ``groups.lr_scale``."""
    meta = config.meta.ppo
    steps = total_steps if total_steps is not None else subset_budget(config, size)
    return replace(meta, total_steps=int(steps), learning_rate=meta.learning_rate * config.groups.lr_scale)


# ---- plain data <-> typed trees --------------------------------------------------------------------
T = TypeVar("T")


def to_data(obj: Any) -> Any:
    """A config tree as plain JSON data (dataclasses → dicts, tuples → lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_data(v) for k, v in obj.items()}
    return obj


def from_data(cls: type[T], data: Any, where: str = "config") -> T:
    """Build ``cls`` (a dataclass) from plain data, checking every field's type.

    Raises:
        ConfigError: a missing or unknown key, or a value of the wrong type; the message names it.
    """
    return typing.cast(T, _convert(cls, data, where))


def _convert(tp: Any, v: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return v
    if dataclasses.is_dataclass(tp):
        if not isinstance(v, dict):
            raise ConfigError(f"{where} must be an object, not {type(v).__name__}")
        hints = get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(v) - names)
        if unknown:
            raise ConfigError(f"{where} has an unknown key {unknown[0]!r}")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name not in v:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ConfigError(f"{where} lacks the key {f.name!r}")
                continue
            kwargs[f.name] = _convert(hints[f.name], v[f.name], f"{where}.{f.name}")
        return typing.cast(Any, tp)(**kwargs)
    if origin is Literal:
        if v not in get_args(tp):
            raise ConfigError(f"{where}={v!r} must be one of {', '.join(map(repr, get_args(tp)))}")
        return v
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if v is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, v, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}={v!r} has the wrong type")
    if origin is tuple:
        if not isinstance(v, list | tuple):
            raise ConfigError(f"{where} must be a list, not {type(v).__name__}")
        (item, _ellipsis) = get_args(tp)
        return tuple(_convert(item, x, f"{where}[{j}]") for j, x in enumerate(v))
    if origin is dict or tp is dict:
        if not isinstance(v, dict):
            raise ConfigError(f"{where} must be an object, not {type(v).__name__}")
        return dict(v)
    if tp is bool:
        if not isinstance(v, bool):
            raise ConfigError(f"{where}={v!r} must be true or false")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{where}={v!r} must be an integer")
        return v
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{where}={v!r} must be a number")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise ConfigError(f"{where}={v!r} must be a string")
        return v
    raise TypeError(f"unsupported config type {tp!r} at {where}")
