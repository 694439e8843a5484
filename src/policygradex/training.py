"""Train or fine-tune a policy into a run directory: config, checkpoint, metrics, evaluation.

Shared by ``policygradex train`` and the pipeline's meta-training and group-policy stages.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from policygradex.config import check_seed
from policygradex.errors import ConfigError
from policygradex.io import atomic_path, read_json, write_json
from policygradex.metrics import MetricsLogger
from policygradex.rl.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from policygradex.rl.evaluate import EvalResult, evaluate
from policygradex.rl.policy import ActorCritic, PolicyConfig
from policygradex.rl.ppo import PPOConfig, TrainState, ppo_config_for, train
from policygradex.rundir import (
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
) -> TrainedPolicy:
    """Train (or fine-tune ``init``) on ``task_indices`` and write ``policy.pt``, ``metrics.jsonl``,
    TensorBoard events and ``eval.json`` into ``directory``.

    If ``policy.pt`` and ``eval.json`` already exist there, nothing is trained: the finished result
    is loaded (a rerun resumes). While training, the training state is saved to ``train_state.pt``
    every ``state_every_s`` seconds (default: :func:`state_interval`); a training killed midway continues from it and ends with the same
    weights as an uninterrupted one (families whose simulators cannot be captured restart from the
    beginning, which gives the same weights too, since training is deterministic).
    """
    d = Path(directory)
    tasks = family.check_indices(task_indices)
    if is_trained(d):
        ckpt = load_checkpoint(policy_path(d), family)
        ev = read_json(eval_path(d))
        return TrainedPolicy(d, ckpt, _eval_from_dict(ev), resumed=True)
    resume = _load_state(d)
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
            state_every_s=state_interval() if state_every_s is None else state_every_s,
        )
        ev = evaluate(result.policy, family, tasks, eval_episodes, seed=seed + 1)
        score = ev.score(family.metric)
        logger.log(result.env_steps, {f"eval/task_{i}": v for i, v in score.items()})
    record = {"env_steps": result.env_steps, "wall_seconds": result.wall_seconds}
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


def _load_state(d: Path) -> TrainState | None:
    """The saved training state in ``d``, or None (none saved, or unreadable: training restarts)."""
    path = train_state_path(d)
    if not path.exists():
        return None
    try:
        return TrainState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError):
        return None  # a state we cannot read costs the time since the start, never a wrong result


def resolve_train(
    family: TaskFamily,
    preset: str = "default",
    *,
    total_steps: int | None = None,
    envs_per_task: int | None = None,
    learning_rate: float | None = None,
    depth: int = 4,
    width: int = 64,
    eval_episodes: int = 20,
    task_indices: Sequence[int] | None = None,
    seed: int = 0,
) -> tuple[PPOConfig, PolicyConfig, list[int]]:
    """The configuration of ``policygradex train`` (and of the same training from Python): the family's
    PPO settings for ``preset`` with the given overrides, the architecture and the checked task indices.

    Raises:
        ConfigError: a bad value or a budget below one rollout, before anything is created.
    """
    ppo = ppo_config_for(
        family, preset, total_steps=total_steps, envs_per_task=envs_per_task, learning_rate=learning_rate
    )
    if eval_episodes < 1:
        raise ConfigError(f"--eval-episodes {eval_episodes} must be at least 1")
    check_seed(seed)
    policy_cfg = PolicyConfig(depth=depth, width=width)
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
