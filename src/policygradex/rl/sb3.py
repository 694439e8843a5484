"""An existing Stable-Baselines3 PPO model as the meta-policy θ* (issue 16; extra ``sb3``).

SB3's ``MlpPolicy`` is an actor-critic of two separate MLPs (so θ* imported from SB3 is always ``arch='mlp'``) — ``mlp_extractor.policy_net`` then
``action_net``, and ``mlp_extractor.value_net`` then ``value_net`` — with a categorical head (discrete
actions) or a diagonal Gaussian with a state-independent ``log_std`` (continuous): exactly the
structure of :class:`~policygradex.rl.policy.ActorCritic`. :func:`load_sb3_policy` copies its weights
into one, so ``log_prob`` (and the per-sample gradients of the estimate) see the same policy SB3 trained.

To train with SB3 on a family, use :func:`make_sb3_env`: the family's tasks as an SB3 ``VecEnv`` whose
observations carry the task id exactly as policygradex's own environments do::

    from stable_baselines3 import PPO
    from policygradex import tasks
    from policygradex.rl.sb3 import make_sb3_env

    family = tasks.make("cartpole-10")
    PPO("MlpPolicy", make_sb3_env(family), seed=0).learn(200_000).save("cartpole10_ppo.zip")
    # policygradex run --family cartpole-10 --meta.from-sb3 cartpole10_ppo.zip --out runs/sb3
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policygradex.errors import MissingExtraError, PolicyGradExError
from policygradex.rl.policy import ActorCritic, PolicyConfig, build_policy
from policygradex.tasks.base import TaskFamily, with_task_id

_FIX = "train it with SB3's default MlpPolicy (the same hidden sizes and activation for pi and vf)"


def _sb3() -> Any:
    try:
        import stable_baselines3
    except ImportError:
        raise MissingExtraError(
            "reading a Stable-Baselines3 model needs the extra sb3: pip install 'policygradex[sb3]'"
        ) from None
    return stable_baselines3


def _load_model(path: str | os.PathLike[str]) -> Any:
    sb3 = _sb3()
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise PolicyGradExError(f"Stable-Baselines3 model {p!r} does not exist; pass the .zip that model.save() wrote")
    try:
        return sb3.PPO.load(p, device="cpu")
    except Exception as e:  # noqa: BLE001 — any unreadable file, other algorithm or version: one line
        detail = " ".join(str(e).split())[:200]
        raise PolicyGradExError(
            f"{p!r} is not a Stable-Baselines3 PPO model ({type(e).__name__}: {detail}); pass the .zip of a PPO model"
        ) from None


def _layers(seq: nn.Module, where: str, path: str) -> tuple[list[nn.Linear], set[type]]:
    """The Linear layers of an SB3 MLP (Linear, activation, Linear, activation, ...) and its activations."""
    linears: list[nn.Linear] = []
    acts: set[type] = set()
    for j, m in enumerate(seq.children()):
        if j % 2 == 0 and isinstance(m, nn.Linear):
            linears.append(m)
        elif j % 2 == 1 and not isinstance(m, nn.Linear):
            acts.add(type(m))
        else:
            raise PolicyGradExError(f"{path!r}: {where} is not a plain MLP (layer {j} is {type(m).__name__}); {_FIX}")
    return linears, acts


def sb3_architecture(model: Any, path: str) -> PolicyConfig:
    """The :class:`PolicyConfig` an SB3 PPO policy maps onto.

    Raises:
        PolicyGradExError: an architecture with no counterpart here (a features extractor with
            parameters, gSDE, squashed outputs, different or uneven actor and critic MLPs, an activation
            other than tanh or ReLU); the message names it and the fix.
    """
    policy = model.policy
    mlp = getattr(policy, "mlp_extractor", None)
    if mlp is None or not hasattr(mlp, "policy_net") or not hasattr(policy, "action_net"):
        raise PolicyGradExError(f"{path!r} holds a {type(policy).__name__}, not SB3's ActorCriticPolicy; {_FIX}")
    if getattr(policy, "use_sde", False) or getattr(policy, "squash_output", False):
        raise PolicyGradExError(f"{path!r} uses gSDE or squashed actions, which have no counterpart here; {_FIX}")
    if any(True for _ in policy.features_extractor.parameters()):
        raise PolicyGradExError(
            f"{path!r} has a {type(policy.features_extractor).__name__} features extractor with weights; use SB3's "
            "MlpPolicy with flat observations"
        )
    pi, pi_acts = _layers(mlp.policy_net, "the actor", path)
    vf, vf_acts = _layers(mlp.value_net, "the critic", path)
    pi_sizes, vf_sizes = [lin.out_features for lin in pi], [lin.out_features for lin in vf]
    if pi_sizes != vf_sizes or len(set(pi_sizes)) > 1:
        raise PolicyGradExError(
            f"{path!r} has hidden layers pi={pi_sizes}, vf={vf_sizes}; policygradex maps only actor and critic MLPs "
            f"of one equal width (e.g. net_arch=dict(pi=[64, 64], vf=[64, 64])); retrain with such a net_arch"
        )
    acts = pi_acts | vf_acts
    names = {nn.Tanh: "tanh", nn.ReLU: "relu"}
    if len(acts) > 1 or (acts and next(iter(acts)) not in names):
        raise PolicyGradExError(
            f"{path!r} uses the activation(s) {sorted(a.__name__ for a in acts)}; policygradex maps Tanh or ReLU; "
            "retrain with activation_fn=torch.nn.Tanh (SB3's default) or torch.nn.ReLU"
        )
    activation = names[next(iter(acts))] if acts else "tanh"
    return PolicyConfig(depth=len(pi) + 1, width=pi_sizes[0] if pi_sizes else 64, activation=activation)  # type: ignore[arg-type]


def load_sb3_policy(path: str | os.PathLike[str], family: TaskFamily) -> ActorCritic:
    """An SB3 PPO model (``.zip``) trained on ``family`` as an :class:`ActorCritic`, weights copied.

    Args:
        path: the ``.zip`` written by ``model.save(...)``.
        family: the family it was trained on (observations with the task id, as :func:`make_sb3_env` gives).

    Raises:
        MissingExtraError: stable-baselines3 is not installed.
        PolicyGradExError: a missing or unreadable file, spaces that do not match the family, or an
            architecture that cannot be mapped (see :func:`sb3_architecture`).
    """
    p = os.fspath(path)
    model = _load_model(p)
    obs_space, act_space = model.observation_space, model.action_space
    if not isinstance(obs_space, gym.spaces.Box) or obs_space.shape != (family.obs_dim,):
        raise PolicyGradExError(
            f"{p!r} observes {obs_space}, family {family.name} gives {family.obs_dim} numbers (observation + task id); "
            "train the model on policygradex.rl.sb3.make_sb3_env(family)"
        )
    same_actions = (
        isinstance(act_space, gym.spaces.Discrete) and family.discrete and int(act_space.n) == family.action_dim
    ) or (isinstance(act_space, gym.spaces.Box) and not family.discrete and act_space.shape == (family.action_dim,))
    if not same_actions:
        raise PolicyGradExError(
            f"{p!r} acts in {act_space}, family {family.name} in {family.describe_action_space()}; use a model trained on it"
        )
    cfg = sb3_architecture(model, p)
    policy = build_policy(family.obs_dim, family.action_dim, family.discrete, cfg, seed=0)
    sb = model.policy
    pi, _ = _layers(sb.mlp_extractor.policy_net, "the actor", p)
    vf, _ = _layers(sb.mlp_extractor.value_net, "the critic", p)
    ours_actor = [m for m in policy.actor.net.modules() if isinstance(m, nn.Linear)]
    ours_critic = [m for m in policy.critic.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for dst, src in zip(ours_actor, [*pi, sb.action_net], strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        for dst, src in zip(ours_critic, [*vf, sb.value_net], strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        if not family.discrete:
            policy.actor.log_std.copy_(sb.log_std)
    return policy


def read_architecture(path: str | os.PathLike[str], family: TaskFamily) -> PolicyConfig:
    """The architecture of the SB3 model at ``path`` once checked against ``family`` (for configs)."""
    return load_sb3_policy(path, family).cfg


class _TaskIdObservation(gym.ObservationWrapper[Any, Any, Any]):
    """Appends a task's one-hot id to each observation, as policygradex's environments do."""

    def __init__(self, env: gym.Env[Any, Any], ids: np.ndarray) -> None:
        super().__init__(env)
        self._ids = ids.reshape(1, -1)
        size = int(np.prod(env.observation_space.shape or (0,))) + self._ids.shape[1]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        return with_task_id(np.asarray(observation).reshape(1, -1), self._ids)[0]


def make_sb3_env(family: TaskFamily, task_indices: Sequence[int] | None = None, envs_per_task: int = 1) -> Any:
    """The family's tasks as an SB3 ``DummyVecEnv`` (``envs_per_task`` copies of each task), observations
    with the one-hot task id appended: what a model for :func:`load_sb3_policy` is trained on."""
    _sb3()  # a missing extra is one line
    from stable_baselines3.common.vec_env import DummyVecEnv

    idx = family.check_indices(task_indices if task_indices is not None else range(family.n))

    def thunk(i: int) -> Any:
        return lambda: _TaskIdObservation(family.make_env(i), family.task_ids(np.array([i])))

    return DummyVecEnv([thunk(i) for i in idx for _ in range(envs_per_task)])
