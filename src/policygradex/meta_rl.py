"""The paper's meta-RL protocol on a finished run of a ``*-meta-10`` family (issue 13).

    run (θ*, features, groups) ─► per seed: groupings ─► MAML per group ─► adapt on the 50 held-out tasks
                                                                         ─► assign each held-out task a group
                                                                         ─► mean return ± 95% CI over seeds

For every protocol seed s the groupings are: the estimated one (the run's ``groups.json``), gradient
similarity (as in ``compare-groupings``), ``random_groupings`` random partitions (new ones per seed),
one MAML policy for all tasks (k = 1), and θ* itself without MAML. Each group's policy is meta-trained
with MAML from θ* (``rl.maml``; the groups of a partition share the run's meta-training budget in
proportion to their sizes), then adapted to **every** held-out task for each setting of
``adapt_steps`` and evaluated there, so any assignment rule is a choice of rows of one table
R[g, j] (group g, held-out task j):

* (a) ``adapt``: adapt every group's policy with ``pick_steps`` steps and keep the group with the best
  return on separate selection episodes (costly, honest);
* (b) ``estimate``: the estimate's own answer, nearly free: θ*'s projected gradient features on the
  held-out task (``gradex.features``, the run's projection) scored against each group's fitted
  direction w_g (``gradex.surrogate.fit_subsets`` on the group's training features) by the first-order
  change of the task's surrogate objective, ⟨mean_t Â^c_t g̃_t, w_g/‖w_g‖⟩
  (``gradex.scores.score_objective_change``; w_g normalised, so every group takes the same step);
* (c) ``fixed``: the largest group for every task (a control);
* ``oracle``: the best R[g, j] in hindsight (an upper bound, not a method).

Beside it, the generalisation measure: Hutchinson's trace of the Hessian of each group policy's
policy-gradient loss on its training tasks (``analysis.hessian``) and the observed gap between its
return on its training tasks and on the held-out tasks (both after the smallest adaptation setting).

Every group policy is one work item of the run's executor; its record (``result.json``) is its
completion mark, so a killed protocol resumes where it stopped and ends with the same ``meta_rl.json``.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from policygradex.config import META_RL_SEED_KEY, GroupInit, derive_seed, to_data
from policygradex.errors import ConfigError
from policygradex.execute import FileContents, make_executor
from policygradex.io import atomic_path, write_json, write_text
from policygradex.pipeline import Run, job_family
from policygradex.rl.checkpoint import load_checkpoint, save_checkpoint
from policygradex.rl.maml import MAMLConfig, MAMLState, TaskParamsPolicy, adapt, meta_train, rollout, stack
from policygradex.rundir import config_path, open_run_dir, policy_path, read_config, trained_files
from policygradex.tasks import FamilyRef
from policygradex.tasks.base import TaskFamily

AssignRule = Literal["adapt", "estimate", "fixed"]
RULES: tuple[str, ...] = ("adapt", "estimate", "fixed", "oracle")
MAML_STATE_FILE = "maml_state.pt"
log = logging.getLogger(__name__)

PAPER = {
    "cartpole": {"theta-star": 145.9, "one-group": 145.9, "random": 144.1, "gradient-similarity": 142.0, "estimated": 159.2},
    "highway": {"theta-star": 140.0, "one-group": 140.0, "random": 143.4, "gradient-similarity": 135.6, "estimated": 153.5},
    "lunarlander": {"theta-star": 53.8, "one-group": 53.8, "random": 73.1, "gradient-similarity": 80.8, "estimated": 82.8},
}
"""The paper's main table (returns on 50 unseen tasks after 200 adaptation steps); its "multi-task training
(one policy)" row stands beside both θ* and the k = 1 MAML policy."""


@dataclass(frozen=True)
class MetaRLConfig:
    """Settings of the meta-RL protocol (``policygradex meta-rl``)."""

    seeds: int = 3
    """Protocol seeds (MAML training, random groupings, adaptation and evaluation; θ* and the estimated
    grouping are the run's); at least 2 for a confidence interval."""
    total_steps: int | None = None
    """MAML env steps of all groups of a partition together, split by group size (default: the run's
    meta-training budget; cartpole-meta-10: 1M)."""
    maml: MAMLConfig = field(default_factory=MAMLConfig)
    """MAML settings; its total_steps and seed are set per group by the protocol."""
    init: GroupInit = "meta"
    """Start each group's MAML from θ* ('meta') or from scratch ('scratch')."""
    adapt_steps: tuple[int, ...] = (1, 200)
    """Adaptation settings: inner-loop updates on the held-out task, each on a fresh rollout of
    maml.rollout_steps × maml.envs_per_task steps (1: few-shot; 200: the paper's "200 adaptation steps")."""
    adapt_lr: float | None = None
    """Step size of the adaptation updates (default: maml.inner_lr)."""
    pick_steps: int = 1
    """Adaptation steps of assignment rule (a), which adapts every group's policy and keeps the best."""
    eval_episodes: int = 10
    """Evaluation episodes per held-out task after adaptation (and as many selection episodes for rule (a))."""
    random_groupings: int = 1
    """Random partitions per seed."""
    assign: AssignRule = "adapt"
    """The assignment rule of the main table: 'adapt' (a), 'estimate' (b) or 'fixed' (c); all three are
    reported in the assignment table."""
    assign_samples: int = 512
    """Transitions of θ* per held-out task for the estimate's assignment (b)."""
    hessian_probes: int = 32
    """Hutchinson probes of the Hessian-trace estimate of each group policy."""

    def __post_init__(self) -> None:
        def positive(name: str, v: Any, least: int = 1) -> None:
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ConfigError(f"--{name.replace('_', '-')} {v!r} must be an integer ≥ {least}")

        positive("seeds", self.seeds)
        positive("eval_episodes", self.eval_episodes)
        positive("random_groupings", self.random_groupings, 0)
        positive("pick_steps", self.pick_steps, 0)
        positive("assign_samples", self.assign_samples)
        positive("hessian_probes", self.hessian_probes)
        if self.total_steps is not None:
            positive("total_steps", self.total_steps)
        if not self.adapt_steps:
            raise ConfigError("--adapt-steps is empty; give at least one number of adaptation steps, e.g. 1 200")
        for v in self.adapt_steps:
            positive("adapt_steps", v, 0)
        if len(set(self.adapt_steps)) != len(self.adapt_steps):
            raise ConfigError(f"--adapt-steps {list(self.adapt_steps)} lists a setting twice; list each once")
        if self.adapt_lr is not None and not 0 < self.adapt_lr < math.inf:
            raise ConfigError(f"--adapt-lr {self.adapt_lr} must be a positive finite number")

    def identity(self) -> dict[str, Any]:
        """What fixes every seed's artifacts (all but ``seeds``: more seeds extend a protocol)."""
        data = to_data(self)
        data.pop("seeds")
        return {"command": "meta-rl", **data}


# ---- the protocol's inputs ---------------------------------------------------------------------------
def test_family_of(family: TaskFamily) -> TaskFamily:
    """The held-out family of a meta-RL training family (``<name>-test``).

    Raises:
        ConfigError: ``family`` is not a meta-RL training family.
    """
    from policygradex import tasks

    name = f"{family.name}-test"
    if family.name.endswith("-test") or name not in tasks.names():
        meta = ", ".join(n.removesuffix("-test") for n in tasks.names() if n.endswith("-meta-10-test"))
        raise ConfigError(
            f"the run was made on family {family.name!r}, which has no held-out tasks for the meta-RL protocol; "
            f"make a run on a meta-RL training family ({meta}) with `policygradex run --family NAME --out DIR`"
        )
    test = tasks.make(name)
    if test.obs_dim != family.obs_dim or test.action_dim != family.action_dim:
        raise ConfigError(f"held-out family {name!r} does not share {family.name!r}'s observation and action sizes")
    return test


def group_maml(run: Run, cfg: MetaRLConfig, size: int, seed: int) -> MAMLConfig:
    """The MAML settings of one group of ``size`` tasks: its share of the partition's budget (at least
    one meta-iteration) and its seed."""
    total = cfg.total_steps if cfg.total_steps is not None else run.config.meta.ppo.total_steps
    steps = max(cfg.maml.steps_per_iteration(size), total * size // run.family.n)
    return replace(cfg.maml, total_steps=int(steps), seed=seed)


def _seed(run: Run, s: int, *keys: int) -> int:
    return derive_seed(run.seed, META_RL_SEED_KEY, s, *keys)


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode())


def partitions_for(run: Run, cfg: MetaRLConfig, s: int) -> dict[str, list[list[int]]]:
    """The groupings of protocol seed ``s`` (``theta-star`` is θ* without MAML: one "group" of all tasks)."""
    from policygradex.grouping.baselines import gradient_similarity, random_partition, task_mean_gradients
    from policygradex.grouping.cluster import cluster

    store, n, k = run.store, run.family.n, run.config.k
    feats = store.load_features(n)
    sim = gradient_similarity(task_mean_gradients([feats[i]["grads"] for i in range(n)],
                                                  [feats[i]["advantages"] for i in range(n)]))
    out = {
        "theta-star": [list(range(n))],
        "one-group": [list(range(n))],
        "estimated": store.load_groups(n),
        "gradient-similarity": [list(map(int, g)) for g in cluster(sim, k, run.config.method, seed=run.seed).groups],
    }
    for r in range(cfg.random_groupings):
        out[f"random-{r}"] = random_partition(n, k, seed=_seed(run, s, 2, r))
    return out


# ---- one group policy: MAML, adaptation, Hessian trace (a work item) -----------------------------------
@dataclass(frozen=True)
class MetaRLJob:
    """One group policy of one grouping and seed (picklable, for any executor).

    Attributes:
        directory: where to train (resuming there), or None: in a scratch directory of the worker, whose
            ``policy.pt`` is sent back.
        maml: MAMLConfig fields; ``train`` False: θ* (the map's shared input) is used as it is.
        init: start the MAML from θ* (else from scratch with θ*'s architecture).
    """

    directory: str | None
    family: FamilyRef
    test_family: FamilyRef
    grouping: str
    group: int
    tasks: tuple[int, ...]
    maml: dict[str, Any]
    train: bool
    init: bool
    adapt_steps: tuple[int, ...]
    pick_steps: int
    adapt_lr: float | None
    adapt_seed: int
    eval_seed: int
    select_seed: int
    eval_episodes: int
    hessian_probes: int
    hessian_seed: int


def run_group(job: MetaRLJob, meta: FileContents) -> dict[str, Any]:
    """Meta-train (or resume, or load) one group policy, adapt it to every held-out task and to its own
    training tasks for each setting, evaluate, and estimate its Hessian trace.

    Returns:
        ``{"record": the group's result.json, "files": {name: bytes}}`` (files only when trained in scratch).
    """
    from policygradex import tasks
    from policygradex.analysis.hessian import policy_hessian_trace
    from policygradex.rl.evaluate import evaluate
    from policygradex.rl.policy import build_policy
    from policygradex.training import state_interval

    family, test = tasks.resolve(job.family), tasks.resolve(job.test_family)
    theta_star = load_checkpoint(meta.local_path(), family)
    cfg = MAMLConfig(**job.maml)
    seconds: dict[str, float] = {}
    files: dict[str, bytes] = {}
    training: dict[str, Any] | None = None
    t0 = time.perf_counter()
    if not job.train:
        policy = theta_star.policy
    else:
        with tempfile.TemporaryDirectory(prefix="policygradex-maml-") as scratch:
            d = Path(job.directory if job.directory is not None else scratch)
            if policy_path(d).exists():
                ckpt = load_checkpoint(policy_path(d), family)
                policy, training = ckpt.policy, ckpt.meta.get("training")
            else:
                init = theta_star.policy if job.init else build_policy(
                    family.obs_dim, family.action_dim, family.discrete, theta_star.policy_config, cfg.seed,
                    task_dim=family.onehot_size)
                if not job.init and init.actor.obs_norm is not None and theta_star.policy.actor.obs_norm is not None:
                    # MAML never updates observation statistics (only PPO's rollouts do): a policy from
                    # scratch starts from θ*'s, so both MAML inits see the same inputs and differ in weights only
                    init.actor.obs_norm.load_state_dict(theta_star.policy.actor.obs_norm.state_dict())
                res = meta_train(family, job.tasks, cfg, init=init, resume=_load_state(d),
                                 on_state=lambda st: _save_state(d, st), state_every_s=state_interval())
                policy = res.policy
                last = res.history[-1]
                training = {"env_steps": res.env_steps, "iterations": len(res.history),
                            "final": {k: v for k, v in last.items() if math.isfinite(v)}}
                save_checkpoint(policy_path(d), policy, family, list(job.tasks), {"training": training, "maml": job.maml})
                (d / MAML_STATE_FILE).unlink(missing_ok=True)
                if job.directory is None:
                    files = trained_files(d)
    seconds["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    held_out = list(range(test.n))
    settings: dict[str, Any] = {}
    adapted: dict[int, Any] = {}
    for steps in sorted(set(job.adapt_steps) | {job.pick_steps}):
        adapted[steps] = adapt(policy, test, held_out, steps, cfg, job.adapt_seed, job.adapt_lr)
    for steps in job.adapt_steps:
        ev = evaluate(TaskParamsPolicy(policy, adapted[steps]), test, held_out, job.eval_episodes, job.eval_seed)
        own = adapt(policy, family, job.tasks, steps, cfg, job.adapt_seed, job.adapt_lr)
        ev_own = evaluate(TaskParamsPolicy(policy, own), family, job.tasks, job.eval_episodes, job.eval_seed)
        settings[str(steps)] = {"test": [ev.score(test.metric)[j] for j in held_out],
                                "train": [ev_own.score(family.metric)[i] for i in job.tasks]}
    sel = evaluate(TaskParamsPolicy(policy, adapted[job.pick_steps]), test, held_out, job.eval_episodes, job.select_seed)
    seconds["adapt"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tasks_list = list(job.tasks)
    venv = family.make_vec(tasks_list, cfg.envs_per_task)
    try:
        gen = torch.Generator().manual_seed(job.hessian_seed)
        data, _ = rollout(policy, stack(policy.actor_params(), len(tasks_list)), family, venv, cfg.rollout_steps,
                          job.hessian_seed, gen, cfg.gamma, cfg.gae_lambda)
    finally:
        venv.close()
    obs = data.obs.reshape(-1, data.obs.shape[-1])
    actions = data.actions.reshape(-1, *data.actions.shape[2:])
    trace = policy_hessian_trace(policy.actor, policy.actor_params(), obs, actions, data.advantages.reshape(-1),
                                 job.hessian_probes, job.hessian_seed)
    seconds["hessian"] = time.perf_counter() - t0
    record = {
        "grouping": job.grouping, "group": job.group, "tasks": tasks_list, "training": training,
        "settings": settings,
        "select": {"steps": job.pick_steps, "test": [sel.score(test.metric)[j] for j in held_out]},
        "hessian": {"trace": trace.mean, "stderr": trace.stderr, "probes": job.hessian_probes, "params": trace.params,
                    "rows": int(obs.shape[0])},
        "seconds": seconds,
    }
    return {"record": record, "files": files}


def _load_state(d: Path) -> MAMLState | None:
    path = d / MAML_STATE_FILE
    if not path.exists():
        return None
    try:
        return MAMLState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # noqa: BLE001 — an unreadable state costs the time since the start, never a wrong result
        return None


def _save_state(d: Path, state: MAMLState) -> None:
    with atomic_path(d / MAML_STATE_FILE) as tmp:
        torch.save(state.to_dict(), tmp)


# ---- the estimate's assignment (b) -------------------------------------------------------------------------
def test_features(run: Run, test: TaskFamily, samples: int) -> dict[str, torch.Tensor]:
    """θ*'s projected gradient features on every held-out task (the run's projection), computed once
    and kept in ``meta_rl/test_features.pt``: ``{"grads": [J, N, d], "advantages": [J, N]}``."""
    from policygradex.gradex.features import collect_features
    from policygradex.gradex.projection import GaussianProjection

    path = run.store.meta_rl_test_features
    if path.exists():
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(data, dict) and data.get("samples") == samples:
                return data
        except Exception:  # noqa: BLE001 — recomputed below (deterministic)
            pass
    ckpt = load_checkpoint(run.store.require(run.store.meta_checkpoint, "meta"), run.family)
    pj = run.store.load_projection()
    proj = GaussianProjection(p=pj["p"], d=pj["d"], seed=pj["seed"])
    ppo = run.config.meta.ppo
    feats = collect_features(ckpt.policy, test, proj, samples, _seed(run, 0, 7), gamma=ppo.gamma, lam=ppo.gae_lambda)
    n_min = min(f.grads.shape[0] for f in feats.values())
    data = {"grads": torch.stack([feats[j].grads[:n_min] for j in range(test.n)]),
            "advantages": torch.stack([feats[j].advantages[:n_min] for j in range(test.n)]), "samples": samples}
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return data


def estimate_scores(run: Run, groups: list[list[int]], test: dict[str, torch.Tensor]) -> np.ndarray:
    """Rule (b)'s table [k, J]: the first-order change of held-out task j's surrogate objective along group
    g's fitted direction w_g/‖w_g‖ (see the module docstring)."""
    from policygradex.gradex.scores import score_objective_change
    from policygradex.gradex.surrogate import fit_subsets

    n = run.family.n
    feats = run.store.load_features(n)
    w = fit_subsets([feats[i]["grads"] for i in range(n)], [feats[i]["advantages"] for i in range(n)], groups,
                    run.config.estimate.l2)
    unit = w.double() / w.double().norm(dim=1, keepdim=True).clamp_min(1e-12)
    j = test["grads"].shape[0]
    return score_objective_change(unit, [list(range(j))] * len(groups), list(test["grads"]), list(test["advantages"]))


def assign(rule: str, records: list[dict[str, Any]], setting: str, est: np.ndarray | None) -> list[int]:
    """The group of every held-out task under ``rule`` ('adapt', 'estimate', 'fixed' or 'oracle'); ties go
    to the lowest group index.

    Args:
        rule: the rule.
        records: the groups' records, in group order.
        setting: the adaptation setting scored (for 'oracle').
        est: rule (b)'s table [k, J] (None for one group).
    """
    k = len(records)
    if k == 1:
        return [0] * len(records[0]["select"]["test"])
    if rule == "adapt":
        table = np.array([r["select"]["test"] for r in records])
    elif rule == "estimate":
        assert est is not None
        table = est
    elif rule == "oracle":
        table = np.array([r["settings"][setting]["test"] for r in records])
    elif rule == "fixed":
        largest = max(range(k), key=lambda g: (len(records[g]["tasks"]), -g))
        return [largest] * len(records[0]["select"]["test"])
    else:
        raise ConfigError(f"assignment rule {rule!r} is unknown; use one of {', '.join(RULES)}")
    return [int(g) for g in np.argmax(table, axis=0)]


def score_of(records: list[dict[str, Any]], groups_of: list[int], setting: str) -> float:
    """Mean over held-out tasks of the return of each task's assigned group after adaptation."""
    return float(np.mean([records[g]["settings"][setting]["test"][j] for j, g in enumerate(groups_of)]))


# ---- the driver ---------------------------------------------------------------------------------------------
def meta_rl(run: Run, cfg: MetaRLConfig, progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """The meta-RL protocol on ``run`` (see the module docstring); writes ``meta_rl/``, ``meta_rl.json``
    and ``meta_rl.md`` and returns the JSON's content.

    Raises:
        ConfigError: a run not made on a meta-RL training family, or a budget below one MAML iteration.
        PolicyGradExError: a missing stage of the run (the message names the command that makes it).
    """
    from policygradex.report import meta_rl_table

    store = run.store
    test = test_family_of(run.family)
    store.require(store.meta_checkpoint, "meta")
    store.require(store.groups_path, "cluster")
    if not store.features_done():
        store.require(store.projection_path, "features")
    partitions = {s: partitions_for(run, cfg, s) for s in range(cfg.seeds)}
    for parts in partitions.values():  # every budget checked before anything is written
        for groups in parts.values():
            for members in groups:
                group_maml(run, cfg, len(members), 0).num_iterations(len(members))
    _open_protocol(run, cfg)
    for s, parts in partitions.items():
        write_json(store.meta_rl_partitions(s), parts)
    test_feats = test_features(run, test, cfg.assign_samples)
    executor = make_executor(run.config.executor, run.config.workers)
    where = [(s, name, g) for s, parts in partitions.items() for name, groups in parts.items() for g in range(len(groups))]
    todo = [w for w in where if not store.meta_rl_result(*w).exists()]
    if len(todo) < len(where):
        log.info("meta-rl: %d group policies already done; %d to go", len(where) - len(todo), len(todo))
    jobs = [_job(run, cfg, test, s, name, g, partitions[s][name][g], executor.local) for s, name, g in todo]
    done = len(where) - len(todo)
    if progress:
        progress("meta-rl", done, len(where))
    meta = FileContents.read(store.meta_checkpoint)
    for (s, name, g), out in zip(todo, executor.map(run_group, jobs, meta), strict=True):
        d = store.meta_rl_group_dir(s, name, g)
        for rel, data in out["files"].items():
            with atomic_path(d / rel) as tmp:
                tmp.write_bytes(data)
        write_json(store.meta_rl_result(s, name, g), out["record"])
        done += 1
        if progress:
            progress("meta-rl", done, len(where))
    result, seconds = summarise(run, cfg, partitions, test_feats)
    write_json(store.meta_rl_json, result)
    write_text(store.meta_rl_md, meta_rl_table(result, seconds))
    return result


def _open_protocol(run: Run, cfg: MetaRLConfig) -> None:
    d = run.store.meta_rl_dir
    wanted = cfg.identity()
    if config_path(d).exists():
        have = read_config(d)
        if have != to_data(wanted):
            diff = sorted(k for k in set(have) | set(wanted) if have.get(k) != to_data(wanted).get(k))
            raise ConfigError(
                f"{str(d)!r} holds a meta-RL protocol with other settings (they differ in: {', '.join(diff)}); "
                f"rerun with the same settings to resume, or delete {str(d)!r} to start over"
            )
    open_run_dir(d, wanted)


def _job(run: Run, cfg: MetaRLConfig, test: TaskFamily, s: int, name: str, g: int, members: list[int],
         local: bool) -> MetaRLJob:
    train = name != "theta-star"
    maml = group_maml(run, cfg, len(members), _seed(run, s, 1, _name_key(name), g))
    return MetaRLJob(
        directory=str(run.store.meta_rl_group_dir(s, name, g)) if local else None,
        family=job_family(run), test_family=test if run.config.executor == "serial" else test.name,
        grouping=name, group=g, tasks=tuple(members), maml=asdict(maml), train=train, init=cfg.init == "meta",
        adapt_steps=tuple(cfg.adapt_steps), pick_steps=cfg.pick_steps, adapt_lr=cfg.adapt_lr,
        adapt_seed=_seed(run, s, 3), eval_seed=_seed(run, s, 4), select_seed=_seed(run, s, 5),
        eval_episodes=cfg.eval_episodes, hessian_probes=cfg.hessian_probes, hessian_seed=_seed(run, s, 6),
    )


def summarise(
    run: Run, cfg: MetaRLConfig, partitions: dict[int, dict[str, list[list[int]]]], test_feats: dict[str, torch.Tensor]
) -> tuple[dict[str, Any], dict[str, float]]:
    """``meta_rl.json``'s content from the records, and the summed compute seconds (kept out of the JSON)."""
    from policygradex.analysis.stats import mean_ci

    store = run.store
    settings = [str(v) for v in cfg.adapt_steps]
    few = str(min(cfg.adapt_steps))
    per_seed: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for s, parts in partitions.items():
        seed_out: dict[str, Any] = {}
        for name, groups in parts.items():
            records = [store.load_meta_rl_result(s, name, g) for g in range(len(groups))]
            for r in records:
                for key, v in r.get("seconds", {}).items():
                    seconds[key] = seconds.get(key, 0.0) + float(v)
            est = estimate_scores(run, groups, test_feats) if len(groups) > 1 else None
            rules = {rule: assign(rule, records, settings[-1], est) for rule in ("adapt", "estimate", "fixed")}
            scores = {setting: {rule: score_of(records, rules[rule], setting) for rule in rules} for setting in settings}
            for setting in settings:
                scores[setting]["oracle"] = score_of(records, assign("oracle", records, setting, est), setting)
            seed_out[name] = {
                "groups": groups, "scores": scores, "assignment": rules,
                "adapt_estimate_agreement": float(np.mean(np.array(rules["adapt"]) == np.array(rules["estimate"]))),
                "hessian": [
                    {"group": g, "tasks": r["tasks"], "trace": r["hessian"]["trace"], "stderr": r["hessian"]["stderr"],
                     "params": r["hessian"]["params"], "train_return": float(np.mean(r["settings"][few]["train"])),
                     "test_return": float(np.mean(r["settings"][few]["test"])),
                     "gap": float(np.mean(r["settings"][few]["train"]) - np.mean(r["settings"][few]["test"]))}
                    for g, r in enumerate(records)
                ],
                "training": [r["training"] for r in records],
            }
        per_seed[str(s)] = seed_out

    def value(seed_out: dict[str, Any], method: str, setting: str, rule: str) -> float:
        if method == "random":
            return float(np.mean([v["scores"][setting][rule] for k_, v in seed_out.items() if k_.startswith("random-")]))
        return float(seed_out[method]["scores"][setting][rule])

    methods = ["theta-star", "one-group", *(["random"] if cfg.random_groupings else []), "gradient-similarity", "estimated"]
    family_key = run.family.name.split("-")[0]
    paper = PAPER.get(family_key, {})

    def interval(xs: list[float]) -> dict[str, Any]:
        iv = mean_ci(xs)
        return {"mean": iv.mean, "ci95": None if len(xs) < 2 else [iv.low, iv.high], "per_seed": xs}

    main = {setting: {m: {**interval([value(per_seed[str(s)], m, setting, cfg.assign) for s in partitions]),
                          "paper": paper.get(m)} for m in methods} for setting in settings}
    grouped = [m for m in methods if m not in ("theta-star", "one-group")]
    assignment = {setting: {m: {rule: interval([value(per_seed[str(s)], m, setting, rule) for s in partitions])
                                for rule in RULES} for m in grouped} for setting in settings}
    result = {
        "family": run.family.full_name, "test_family": f"{run.family.name}-test", "k": run.config.k,
        "seeds": list(partitions), "assign": cfg.assign, "settings": settings, "methods": methods, "grouped": grouped, "config": to_data(cfg.identity()),
        "maml_budget_per_partition": cfg.total_steps or run.config.meta.ppo.total_steps,
        "main": main, "assignment": assignment, "per_seed": per_seed,
    }
    return result, seconds
