"""Train or fine-tune a policy into a run directory: config, checkpoint, metrics, evaluation.

Shared by ``policygradex train`` and the pipeline's meta-training and group-policy stages; and
:class:`TagLookahead`, the observer that records TAG's lookahead affinity during the meta-training.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policygradex.config import check_seed
from policygradex.errors import ConfigError
from policygradex.grouping.baselines import LookaheadBatch, tag_lookahead
from policygradex.io import atomic_path, read_json, write_json
from policygradex.metrics import MetricsLogger
from policygradex.rl.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from policygradex.rl.evaluate import EvalResult, evaluate
from policygradex.rl.policy import ActorCritic, Arch, PolicyConfig, policy_config_for
from policygradex.rl.ppo import PPOConfig, TrainState, UpdateObserver, ppo_config_for, train
from policygradex.rl.rollout import Batch
from policygradex.rundir import (
    TagRecord,
    eval_path,
    is_trained,
    metrics_path,
    policy_path,
    tensorboard_dir,
    train_state_path,
)
from policygradex.tasks.base import TaskFamily
from policygradex.threads import torch_threads

Progress = Callable[[int, int, dict[str, float]], None]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedPolicy:
    """A policy in a run directory and its evaluation."""

    directory: Path
    checkpoint: Checkpoint
    evaluation: EvalResult
    resumed: bool


def train_into(
    directory: str | os.PathLike[str],
    family: TaskFamily,
    task_indices: Sequence[int],
    ppo: PPOConfig,
    policy_cfg: PolicyConfig,
    seed: int,
    eval_episodes: int,
    init: ActorCritic | None = None,
    tensorboard: bool = True,
    progress: Progress | None = None,
    extra_meta: dict[str, Any] | None = None,
    state_every_s: float | None = None,
    observer: UpdateObserver | None = None,
    on_done: Callable[[], None] | None = None,
) -> TrainedPolicy:
    """Train (or fine-tune ``init``) on ``task_indices`` and write ``policy.pt``, ``metrics.jsonl``,
    TensorBoard events and ``eval.json`` into ``directory``.

    If ``policy.pt`` and ``eval.json`` already exist there, nothing is trained: the finished result
    is loaded (a rerun resumes). While training, the training state is saved to ``train_state.pt``
    every ``state_every_s`` seconds (default: :func:`state_interval`); a training killed midway continues from it and ends with the same
    weights as an uninterrupted one (families whose simulators cannot be captured restart from the
    beginning, which gives the same weights too, since training is deterministic).

    ``observer`` watches the training (:class:`~policygradex.rl.ppo.UpdateObserver`; its state is part
    of ``train_state.pt``); ``on_done`` is called after training and evaluation and before
    ``policy.pt`` is written, so what it saves exists whenever the finished policy does. Neither is
    called when the finished result is loaded.
    """
    d = Path(directory)
    tasks = family.check_indices(task_indices)
    if is_trained(d):
        ckpt = load_checkpoint(policy_path(d), family)
        ev = read_json(eval_path(d))
        return TrainedPolicy(d, ckpt, _eval_from_dict(ev), resumed=True)
    resume = _load_state(d, observer is not None)
    if resume is not None:
        log.info("%s: resuming from its saved training state (%d iterations done)", d, len(resume.history))

    def save_state(state: TrainState) -> None:
        with atomic_path(train_state_path(d)) as tmp:
            torch.save(state.to_dict(), tmp)

    with torch_threads(), MetricsLogger(metrics_path(d), tensorboard_dir(d) if tensorboard else None) as logger:
        if resume is not None:  # the log restarts with the iterations the state already holds
            for j, metrics in enumerate(resume.history):
                logger.log((j + 1) * ppo.batch_size(len(tasks)), metrics)
        result = train(
            family, tasks, ppo, seed, policy_cfg=policy_cfg, init=init, logger=logger, progress=progress,
            resume=resume, on_state=save_state,
            state_every_s=state_interval() if state_every_s is None else state_every_s, observer=observer,
        )
        ev = evaluate(result.policy, family, tasks, eval_episodes, seed=seed + 1)
        score = ev.score(family.metric)
        logger.log(result.env_steps, {f"eval/task_{i}": v for i, v in score.items()})
    record = {"env_steps": result.env_steps, "wall_seconds": result.wall_seconds}
    if on_done is not None:
        on_done()
    return _save_trained(d, result.policy, family, tasks, ev, {"ppo": asdict(ppo), "seed": seed, **record,
                                                                **(extra_meta or {})}, record)


def import_into(
    directory: str | os.PathLike[str],
    policy: ActorCritic,
    family: TaskFamily,
    task_indices: Sequence[int],
    seed: int,
    eval_episodes: int,
    source: dict[str, Any],
) -> TrainedPolicy:
    """Write a policy trained elsewhere (e.g. by Stable-Baselines3) into ``directory`` as if trained there:
    ``policy.pt`` and ``eval.json`` (evaluated as :func:`train_into` evaluates), ``source`` recorded in
    both. Nothing is done if the directory already holds a finished policy."""
    d = Path(directory)
    tasks = family.check_indices(task_indices)
    if is_trained(d):
        return TrainedPolicy(d, load_checkpoint(policy_path(d), family), _eval_from_dict(read_json(eval_path(d))), True)
    with torch_threads():
        ev = evaluate(policy, family, tasks, eval_episodes, seed=seed + 1)
    return _save_trained(d, policy, family, tasks, ev, {"seed": seed, **source}, {"env_steps": 0, **source})


def _save_trained(
    d: Path, policy: ActorCritic, family: TaskFamily, tasks: list[int], ev: EvalResult, meta: dict[str, Any],
    record: dict[str, Any],
) -> TrainedPolicy:
    """The checkpoint, then the evaluation (the completion mark); the training state is dropped."""
    save_checkpoint(policy_path(d), policy, family, tasks, meta)
    write_json(eval_path(d), {**ev.to_dict(), **record})
    train_state_path(d).unlink(missing_ok=True)
    return TrainedPolicy(d, load_checkpoint(policy_path(d), family), ev, resumed=False)


STATE_INTERVAL_ENV = "POLICYGRADEX_STATE_EVERY_S"
DEFAULT_STATE_INTERVAL_S = 30.0


def state_interval() -> float:
    """Seconds between two saves of the training state: ``$POLICYGRADEX_STATE_EVERY_S`` or 30.

    A setting of the process, not of the run: it changes how much work a kill loses, never a result,
    so it is not part of ``config.json``.
    """
    raw = os.environ.get(STATE_INTERVAL_ENV)
    if raw is None:
        return DEFAULT_STATE_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise ConfigError(f"{STATE_INTERVAL_ENV}={raw!r} must be a number of seconds ≥ 0")
    return value


def _load_state(d: Path, observed: bool = False) -> TrainState | None:
    """The saved training state in ``d``, or None (none saved, unreadable, or without the observer's
    state that an ``observed`` training needs: training restarts)."""
    path = train_state_path(d)
    if not path.exists():
        return None
    try:
        state = TrainState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError):
        return None  # a state we cannot read costs the time since the start, never a wrong result
    if observed and state.observer is None:
        return None  # the observer could not continue; restarting gives the same weights and its full record
    return state


class TagLookahead:
    """TAG's lookahead inter-task affinity (Fifty et al. 2021) averaged over a training: an
    :class:`~policygradex.rl.ppo.UpdateObserver` (issue 12, item 3).

    At every ``every``-th PPO update (iterations 0, K, 2K, ...), before its gradient steps, it computes
    Z = :func:`~policygradex.grouping.baselines.tag_lookahead` at the current θ with each task's PPO
    surrogate loss on its own rows of the fresh batch and the update's learning rate as η, and adds the
    defined entries of Z to a running sum and count per entry. The mean over the training is
    :func:`~policygradex.grouping.baselines.tag_affinity` of every matrix collected, without keeping them.

    Advantages are normalised over the whole batch as the update normalises them (``norm_adv``), not per
    task: centred per task, every L_j(θ_old) would be 0 and Z undefined. The lookahead runs in float64 on
    copies of θ, because with η a training learning rate (about 1e-4) the loss changes are close to
    float32's resolution of the losses; it draws no random numbers, so the trained weights are unchanged.

    Args:
        tasks: the family indices of the trained tasks; row/column a of Z is ``tasks[a]``.
        every: K ≥ 1.
        clip_coef: PPO's ε of the training.
        norm_adv: whether the training normalises advantages.
    """

    def __init__(self, tasks: Sequence[int], every: int, clip_coef: float, norm_adv: bool) -> None:
        if every < 1:
            raise ConfigError(f"tag_every={every} must be at least 1 here (0 turns the TAG lookahead off)")
        self.tasks = [int(t) for t in tasks]
        self.every = every
        self.clip_coef = clip_coef
        self.norm_adv = norm_adv
        n = len(self.tasks)
        self.sum = torch.zeros(n, n, dtype=torch.float64)
        self.count = torch.zeros(n, n, dtype=torch.int64)
        self.lookaheads = 0
        self.seconds = 0.0

    def lookahead_batches(self, batch: Batch) -> list[LookaheadBatch]:
        """Each task's rows of ``batch`` (in the order of ``tasks``) in float64, advantages as the update uses them."""
        adv = batch.advantages
        if self.norm_adv and len(adv) > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        out = []
        for t in self.tasks:
            rows = batch.task == t
            actions = batch.actions[rows]
            out.append(LookaheadBatch(
                batch.obs[rows].double(), actions if not actions.is_floating_point() else actions.double(),
                adv[rows].double(), batch.logp[rows].double(),
            ))
        return out

    def observe(self, iteration: int, policy: ActorCritic, batch: Batch, lr: float) -> None:
        """Add the lookahead of this update (if ``iteration`` is a multiple of ``every``)."""
        if iteration % self.every:
            return
        start = time.perf_counter()
        params = {k: v.double() for k, v in policy.actor_params().items()}
        z = tag_lookahead(policy.actor, params, self.lookahead_batches(batch), lr, self.clip_coef)
        defined = torch.isfinite(z)
        self.sum += torch.where(defined, z, 0.0)
        self.count += defined.long()
        self.lookaheads += 1
        self.seconds += time.perf_counter() - start

    def mean(self) -> np.ndarray:
        """Z̄ [n, n]: the mean of each entry over the matrices that defined it (NaN where none did)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count.numpy() > 0, self.sum.numpy() / self.count.numpy(), np.nan)

    def record(self) -> TagRecord:
        """What the store saves."""
        return TagRecord(self.mean(), self.count.numpy().copy(), self.every, self.lookaheads, self.seconds)

    def state_dict(self) -> dict[str, Any]:
        """The running sum and count, the counters and the settings that must match on resume."""
        return {"sum": self.sum.clone(), "count": self.count.clone(), "lookaheads": self.lookaheads,
                "seconds": self.seconds, "every": self.every, "tasks": list(self.tasks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; ValueError for the state of another observer or tasks."""
        n = len(self.tasks)
        if state.get("every") != self.every or state.get("tasks") != self.tasks:
            raise ValueError(f"the state is that of a TAG lookahead every {state.get('every')} over tasks "
                             f"{state.get('tasks')}, not every {self.every} over {self.tasks}")
        s, c = state.get("sum"), state.get("count")
        if not isinstance(s, torch.Tensor) or not isinstance(c, torch.Tensor) or s.shape != (n, n) or c.shape != (n, n):
            raise ValueError(f"the state's running sum and count are not [{n}, {n}] tensors")
        self.sum = s.to(torch.float64).clone()
        self.count = c.to(torch.int64).clone()
        self.lookaheads = int(state["lookaheads"])
        self.seconds = float(state["seconds"])


def resolve_train(
    family: TaskFamily,
    preset: str = "default",
    *,
    total_steps: int | None = None,
    envs_per_task: int | None = None,
    learning_rate: float | None = None,
    depth: int = 4,
    width: int = 64,
    arch: Arch = "mlp",
    experts: int | None = None,
    obs_norm: bool | None = None,
    eval_episodes: int = 20,
    task_indices: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[PPOConfig, PolicyConfig, list[int]]:
    """The configuration of ``policygradex train`` (and of the same training from Python): the family's
    PPO settings for ``preset`` with the given overrides, the architecture (``obs_norm`` None: the
    family's preset) and the checked task indices.

    Raises:
        ConfigError: a bad value or a budget below one rollout, before anything is created.
    """
    ppo = ppo_config_for(
        family, preset, total_steps=total_steps, envs_per_task=envs_per_task, learning_rate=learning_rate
    )
    if eval_episodes < 1:
        raise ConfigError(f"--eval-episodes {eval_episodes} must be at least 1")
    check_seed(seed)
    policy_cfg = policy_config_for(family, depth=depth, width=width, arch=arch, experts=experts, obs_norm=obs_norm)
    tasks = family.check_indices(task_indices if task_indices is not None else range(family.n))
    ppo.num_iterations(len(tasks))  # refuse a budget below one rollout before creating anything
    return ppo, policy_cfg, tasks


def _eval_from_dict(d: dict[str, Any]) -> EvalResult:
    def keyed(x: dict[str, float] | None) -> dict[int, float] | None:
        return None if x is None else {int(k): float(v) for k, v in x.items()}

    mean = keyed(d["mean_return"])
    std = keyed(d["std_return"])
    assert mean is not None and std is not None
    return EvalResult(mean, std, keyed(d["success_rate"]), int(d["episodes"]))
