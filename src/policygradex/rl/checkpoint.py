"""Checkpoints are data: state dict, configs, family and counters, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from policygradex.errors import ConfigError, PolicyGradExError
from policygradex.io import atomic_path
from policygradex.rl.policy import ActorCritic, PolicyConfig, build_policy
from policygradex.tasks.base import TaskFamily

FORMAT = "policygradex-checkpoint/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        policy: the network, weights loaded.
        policy_config: its architecture.
        family: the family's name; family_version: its version.
        family_ref: what rebuilds the family (``tasks.make(family_ref)``): its name, or its
            ``module:factory`` for a family built from one.
        task_indices: the tasks it was trained on.
        meta: anything else that was saved (training config, counters, metrics).
    """

    policy: ActorCritic
    policy_config: PolicyConfig
    family: str
    family_version: str
    task_indices: list[int]
    family_ref: str
    meta: dict[str, Any]


def save_checkpoint(
    path: str | os.PathLike[str],
    policy: ActorCritic,
    family: TaskFamily,
    task_indices: list[int],
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically. ``meta`` must be plain data (str, numbers, lists, dicts)."""
    payload = {
        "format": FORMAT,
        "state_dict": policy.state_dict(),
        "policy_config": asdict(policy.cfg),
        "obs_dim": policy.obs_dim,
        "action_dim": policy.action_dim,
        "discrete": policy.discrete,
        "task_dim": policy.task_dim,
        "family": family.name,
        "family_ref": family.ref,
        "family_version": family.version,
        "task_indices": list(task_indices),
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str], family: TaskFamily | None = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``.pt`` file.
        family: if given, the checkpoint must belong to this family (name, version and shapes).

    Raises:
        PolicyGradExError: missing, unreadable or corrupt file, not a policygradex checkpoint, or a
            checkpoint of another family.
    """
    p = Path(path)
    if not p.is_file():
        raise PolicyGradExError(f"checkpoint {str(p)!r} does not exist; pass the policy.pt written by a run")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise PolicyGradExError(
            f"checkpoint {str(p)!r} is corrupt or not a PyTorch file ({type(e).__name__}); rerun the training that writes it"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PolicyGradExError(f"{str(p)!r} is not a policygradex checkpoint ({FORMAT}); pass a policy.pt written by policygradex")
    try:
        cfg = PolicyConfig(**payload["policy_config"])  # a checkpoint written before `arch` existed is an MLP
        policy = build_policy(
            payload["obs_dim"], payload["action_dim"], payload["discrete"], cfg, seed=0,
            task_dim=int(payload.get("task_dim", 0)),
        )
        policy.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ConfigError) as e:
        # torch's size-mismatch message spans several lines; the CLI promises one line (issue 17).
        detail = " ".join(str(e).split())
        raise PolicyGradExError(f"checkpoint {str(p)!r} is damaged ({type(e).__name__}: {detail}); rerun the training that writes it") from None
    ckpt = Checkpoint(
        policy=policy,
        policy_config=cfg,
        family=payload["family"],
        family_version=payload["family_version"],
        task_indices=list(payload["task_indices"]),
        meta=payload.get("meta", {}),
        family_ref=str(payload.get("family_ref", payload["family"])),
    )
    if family is not None:
        check_matches(ckpt, family, p)
    return ckpt


def check_matches(ckpt: Checkpoint, family: TaskFamily, path: Path) -> None:
    """Raise :class:`PolicyGradExError` unless ``ckpt`` was trained on ``family`` (same version and shapes)."""
    if ckpt.family != family.name or ckpt.family_version != family.version:
        raise PolicyGradExError(
            f"checkpoint {str(path)!r} belongs to family {ckpt.family}-{ckpt.family_version}, "
            f"not {family.full_name}; pass --family {ckpt.family_ref} or a checkpoint of {family.name}"
        )
    wrong_id = ckpt.policy.cfg.arch != "mlp" and ckpt.policy.task_dim != family.onehot_size
    if ckpt.policy.obs_dim != family.obs_dim or ckpt.policy.action_dim != family.action_dim or wrong_id:
        raise PolicyGradExError(
            f"checkpoint {str(path)!r} has observation/action sizes {ckpt.policy.obs_dim}/{ckpt.policy.action_dim}, "
            f"family {family.name} needs {family.obs_dim}/{family.action_dim}; retrain for this family"
        )
