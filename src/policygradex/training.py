"""Train or fine-tune a policy into a run directory: config, checkpoint, metrics, evaluation.

Shared by ``policygradex train`` and the pipeline's meta-training and group-policy stages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from policygradex.io import read_json, write_json
from policygradex.metrics import MetricsLogger
from policygradex.rl.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from policygradex.rl.evaluate import EvalResult, evaluate
from policygradex.rl.policy import ActorCritic, PolicyConfig
from policygradex.rl.ppo import PPOConfig, train
from policygradex.tasks.base import TaskFamily

POLICY_FILE = "policy.pt"
EVAL_FILE = "eval.json"

Progress = Callable[[int, int, dict[str, float]], None]


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
) -> TrainedPolicy:
    """Train (or fine-tune ``init``) on ``task_indices`` and write ``policy.pt``, ``metrics.jsonl``,
    TensorBoard events and ``eval.json`` into ``directory``.

    If ``policy.pt`` and ``eval.json`` already exist there, nothing is trained: the finished result
    is loaded (a rerun resumes). Training is deterministic, so a run killed midway and restarted
    produces the same checkpoint.
    """
    d = Path(directory)
    tasks = family.check_indices(task_indices)
    if (d / POLICY_FILE).exists() and (d / EVAL_FILE).exists():
        ckpt = load_checkpoint(d / POLICY_FILE, family)
        ev = read_json(d / EVAL_FILE)
        return TrainedPolicy(d, ckpt, _eval_from_dict(ev), resumed=True)
    with MetricsLogger(d, tensorboard=tensorboard) as logger:
        result = train(family, tasks, ppo, seed, policy_cfg=policy_cfg, init=init, logger=logger, progress=progress)
        ev = evaluate(result.policy, family, tasks, eval_episodes, seed=seed + 1)
        score = ev.score(family.metric)
        logger.log(result.env_steps, {f"eval/task_{i}": v for i, v in score.items()})
    meta = {
        "ppo": asdict(ppo),
        "seed": seed,
        "env_steps": result.env_steps,
        "wall_seconds": result.wall_seconds,
        **(extra_meta or {}),
    }
    save_checkpoint(d / POLICY_FILE, result.policy, family, tasks, meta)
    write_json(d / EVAL_FILE, {**ev.to_dict(), "env_steps": result.env_steps, "wall_seconds": result.wall_seconds})
    ckpt = load_checkpoint(d / POLICY_FILE, family)
    return TrainedPolicy(d, ckpt, ev, resumed=False)


def _eval_from_dict(d: dict[str, Any]) -> EvalResult:
    def keyed(x: dict[str, float] | None) -> dict[int, float] | None:
        return None if x is None else {int(k): float(v) for k, v in x.items()}

    mean = keyed(d["mean_return"])
    std = keyed(d["std_return"])
    assert mean is not None and std is not None
    return EvalResult(mean, std, keyed(d["success_rate"]), int(d["episodes"]))
