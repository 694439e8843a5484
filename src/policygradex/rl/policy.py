"""Actor-critic policies with a pure, ``torch.func``-ready log-probability.

The actor and the critic are separate networks (no shared trunk), so the actor's parameters θ — the
ones PolicyGradEx differentiates (paper §2.2) — are exactly ``policy.actor.named_parameters()``. Both
are built by :func:`policygradex.rl.networks.build_network` for the configured architecture: the plain
MLP (default) or one of the multitask architectures (SM, CARE, PaCo, MOORE; issue 14). The critic uses
the same architecture as the actor, with its own parameters: each of the four papers conditions its
value/Q networks on the task the same way as its policy, and a value MLP beside an SM actor would make
"SM vs MLP" compare two different critics as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from policygradex.errors import ConfigError
from policygradex.rl.networks import ARCHS, DEFAULT_EXPERTS, MIN_DEPTH, Arch, build_network
from policygradex.rl.networks import mlp as _mlp
from policygradex.rl.networks.common import Activation, layer_init
from policygradex.rl.obs_norm import RunningObsNorm

if TYPE_CHECKING:
    from policygradex.tasks.base import TaskFamily

__all__ = [
    "Activation", "Actor", "ActorCritic", "Arch", "PolicyConfig", "build_policy", "distribution_log_prob",
    "layer_init", "log_prob", "mlp", "policy_config_for",
]


@dataclass(frozen=True)
class PolicyConfig:
    """Network architecture.

    Attributes:
        depth: number of linear layers along the main path of the actor and of the critic (the paper uses 4).
        width: hidden units per layer.
        activation: hidden nonlinearity.
        init_log_std: initial log standard deviation of the Gaussian head (continuous actions).
        arch: the network (:mod:`policygradex.rl.networks`).
        experts: modules per layer (sm), state encoders (care), parameter sets (paco) or experts (moore);
            None for mlp; filled with the architecture's default when left out.
        obs_norm: normalise the state part of observations by running mean and variance
            (:mod:`policygradex.rl.obs_norm`); the statistics are updated only by PPO's rollouts.
    """

    depth: int = 4
    """Number of linear layers in the actor and in the critic (paper: 4)."""
    width: int = 64
    """Hidden units per layer."""
    activation: Activation = "tanh"
    """Hidden nonlinearity."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian head (continuous actions only)."""
    arch: Arch = "mlp"
    """Network: 'mlp', or a multitask architecture: 'sm' (Soft Modularization), 'care', 'paco', 'moore'."""
    experts: int | None = None
    """Modules per layer (sm), state encoders (care), parameter sets (paco), experts (moore); default per arch."""
    obs_norm: bool = False
    """Normalise observations (not the task id) by their running mean and variance, clipped to ±10; the
    statistics are buffers of the policy, updated by PPO's rollouts only."""

    def __post_init__(self) -> None:
        if not isinstance(self.obs_norm, bool):
            raise ConfigError(f"obs_norm={self.obs_norm!r} must be True or False")
        if self.arch not in ARCHS:
            raise ConfigError(f"arch={self.arch!r} is not an architecture; use one of {', '.join(ARCHS)}")
        if self.depth < 1:
            raise ConfigError(f"depth={self.depth} must be at least 1 (the number of linear layers)")
        if self.width < 1:
            raise ConfigError(f"width={self.width} must be a positive number of hidden units")
        if self.depth < MIN_DEPTH[self.arch]:
            raise ConfigError(
                f"arch={self.arch!r} needs depth ≥ {MIN_DEPTH[self.arch]}, got depth={self.depth}; raise depth"
                + (" (sm: depth − 2 layers of modules, at least 2)" if self.arch == "sm" else "")
            )
        if self.arch == "mlp":
            if self.experts is not None:
                raise ConfigError(
                    f"experts={self.experts} applies to the multitask architectures only; leave it out with arch='mlp'"
                )
            return
        if self.experts is None:
            object.__setattr__(self, "experts", DEFAULT_EXPERTS[self.arch])
        assert self.experts is not None
        if isinstance(self.experts, bool) or not isinstance(self.experts, int) or self.experts < 1:
            raise ConfigError(f"experts={self.experts!r} must be a positive integer")
        if self.arch == "moore" and self.experts > self.width:
            raise ConfigError(
                f"arch='moore' orthogonalises {self.experts} expert representations of size width={self.width}; "
                "choose experts ≤ width"
            )


def policy_config_for(family: TaskFamily, **settings: Any) -> PolicyConfig:
    """The architecture of a new policy for ``family``: the library defaults, then the family's
    ``policy_overrides`` (e.g. Meta-World's ``obs_norm``), then ``settings`` (None values ignored).

    Raises:
        ConfigError: a value PolicyConfig refuses.
    """
    given = {k: v for k, v in settings.items() if v is not None}
    return PolicyConfig(**{**dict(family.policy_overrides), **given})


def mlp(in_dim: int, out_dim: int, cfg: PolicyConfig, out_gain: float) -> nn.Sequential:
    """``cfg.depth`` linear layers with ``cfg.activation`` between them."""
    return _mlp(in_dim, out_dim, cfg.depth, cfg.width, cfg.activation, out_gain)


def _network(cfg: PolicyConfig, obs_dim: int, out_dim: int, task_dim: int, out_gain: float) -> nn.Module:
    return build_network(cfg.arch, obs_dim, out_dim, task_dim, cfg.depth, cfg.width, cfg.activation, cfg.experts, out_gain)


def _check_task_dim(obs_dim: int, task_dim: int, cfg: PolicyConfig) -> None:
    if cfg.obs_norm and not 0 <= task_dim < obs_dim:
        raise ConfigError(
            f"obs_norm normalises the {obs_dim} − task_dim observation entries before the task id, but "
            f"task_dim={task_dim}; pass the family's onehot_size (0 to normalise every entry)"
        )
    if cfg.arch != "mlp" and not 1 <= task_dim < obs_dim:
        raise ConfigError(
            f"arch={cfg.arch!r} reads a one-hot task id at the end of the observation, but task_dim={task_dim} "
            f"(observation size {obs_dim}); build it for a task family (task_dim = family.onehot_size)"
        )


class Actor(nn.Module):
    """Maps observations to action-distribution parameters.

    Discrete: ``forward`` returns logits [B, A]. Continuous: the mean [B, A]; the state-independent
    ``log_std`` [A] is a parameter of this module, so it is part of θ. ``net`` is the network of
    ``cfg.arch`` (an ``nn.Sequential`` of linear layers for the MLP). With ``cfg.obs_norm``,
    ``obs_norm`` (:class:`~policygradex.rl.obs_norm.RunningObsNorm`, buffers only, so not part of θ)
    normalises the first ``obs_dim − task_dim`` entries of the input before ``net``; else it is None.
    """

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, cfg: PolicyConfig, task_dim: int = 0) -> None:
        super().__init__()
        _check_task_dim(obs_dim, task_dim, cfg)
        self.discrete = discrete
        self.obs_norm: RunningObsNorm | None = RunningObsNorm(obs_dim - task_dim) if cfg.obs_norm else None
        self.net = _network(cfg, obs_dim, action_dim, task_dim, out_gain=0.01)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(cfg.init_log_std)))

    def normalize(self, obs: Tensor) -> Tensor:
        """The input ``net`` sees: the observation normalised by the running statistics (as it is without
        ``obs_norm``). [..., obs_dim] → [..., obs_dim]."""
        return obs if self.obs_norm is None else self.obs_norm(obs)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self.normalize(obs))


def distribution_log_prob(actor: Actor, out: Tensor, actions: Tensor, log_std: Tensor | None) -> Tensor:
    """log π(a|s) from the actor output. out: [..., A]; actions: [...] (discrete) or [..., A] → [...]."""
    if actor.discrete:
        logp = torch.log_softmax(out, dim=-1)
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    assert log_std is not None
    z = (actions - out) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def log_prob(actor: Actor, params: dict[str, Tensor], obs: Tensor, actions: Tensor) -> Tensor:
    """Pure log π_θ(a|s) with θ given explicitly: usable under ``torch.func.grad``/``vmap``.

    Args:
        actor: the module whose architecture is used (its own parameters are ignored).
        params: θ as ``{name: tensor}`` with the names of ``actor.named_parameters()``.
        obs: [B, obs_dim] (or [obs_dim] for one sample under ``vmap``).
        actions: [B] int (discrete) or [B, A] float; without the batch dimension for one sample.

    Returns:
        [B] log-probabilities (summed over action dimensions for continuous actions), or [] for one sample.
    """
    out = functional_call(actor, params, (obs,))
    return distribution_log_prob(actor, out, actions, params.get("log_std"))


class ActorCritic(nn.Module):
    """Actor and critic networks (same architecture, separate parameters) for one observation/action space.

    Args:
        obs_dim: observation size (including the task id).
        action_dim: number of discrete actions, or the continuous action dimension.
        discrete: categorical head if True, diagonal Gaussian otherwise.
        cfg: architecture.
        task_dim: length of the one-hot task id at the end of each observation (the family's
            ``onehot_size``); needed by the multitask architectures, unused by the MLP.
    """

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, cfg: PolicyConfig, task_dim: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.discrete = discrete
        self.task_dim = task_dim
        self.actor = Actor(obs_dim, action_dim, discrete, cfg, task_dim)
        self.critic = _network(cfg, obs_dim, 1, task_dim, out_gain=1.0)

    def value(self, obs: Tensor) -> Tensor:
        """V(s). obs: [B, obs_dim] → [B]. The critic reads the observation normalised by the actor's
        statistics (one set of statistics for both, as VecNormalize gives both the same input)."""
        return self.critic(self.actor.normalize(obs)).squeeze(-1)

    def update_obs_norm(self, obs: Tensor) -> None:
        """Add observations [B, obs_dim] to the running statistics (nothing without ``cfg.obs_norm``).

        Called by PPO's training after each rollout (``rl.ppo.train``) and nowhere else: evaluation,
        feature collection, scoring and MAML leave the statistics as they are.
        """
        if self.actor.obs_norm is not None:
            self.actor.obs_norm.update(obs)

    def actor_params(self) -> dict[str, Tensor]:
        """θ: the actor's parameters, detached, as ``{name: tensor}``."""
        return {k: v.detach() for k, v in self.actor.named_parameters()}

    def log_prob_entropy(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """log π(a|s) [B] and the entropy of π(·|s) [B], with gradients to the actor."""
        out = self.actor(obs)
        log_std = getattr(self.actor, "log_std", None)
        logp = distribution_log_prob(self.actor, out, actions, log_std)
        if self.discrete:
            lp = torch.log_softmax(out, dim=-1)
            entropy = -(lp.exp() * lp).sum(-1)
        else:
            assert log_std is not None
            entropy = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum().expand(out.shape[0])
        return logp, entropy

    @torch.no_grad()
    def act(self, obs: Tensor, generator: torch.Generator, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """Sample (or take the mode of) π(·|s).

        Args:
            obs: [B, obs_dim].
            generator: the random stream used for sampling (explicit, for reproducibility).
            deterministic: take argmax / the mean instead of sampling.

        Returns:
            actions [B] long or [B, A] float, and their log-probabilities [B].
        """
        return sample_actions(self.actor, self.actor(obs), getattr(self.actor, "log_std", None), generator, deterministic)


@torch.no_grad()
def sample_actions(
    actor: Actor, out: Tensor, log_std: Tensor | None, generator: torch.Generator, deterministic: bool = False
) -> tuple[Tensor, Tensor]:
    """Sample (or take the mode of) the action distribution given the actor's output.

    Shared by :meth:`ActorCritic.act` and policies whose parameters are given explicitly (MAML's
    per-task adapted parameters, ``rl.maml``), so both draw the same actions from the same stream.

    Args:
        actor: the architecture (its ``discrete`` flag is read).
        out: [B, A] logits or Gaussian means.
        log_std: [A] (continuous actions) or None.
        generator: the random stream used for sampling.
        deterministic: take argmax / the mean instead of sampling.

    Returns:
        actions [B] long or [B, A] float, and their log-probabilities [B].
    """
    if actor.discrete:
        if deterministic:
            actions = out.argmax(-1)
        else:
            u = torch.rand(out.shape, generator=generator).clamp_(1e-20, 1.0)
            actions = (out - torch.log(-torch.log(u))).argmax(-1)  # Gumbel-max sampling
        return actions, distribution_log_prob(actor, out, actions, None)
    assert log_std is not None
    if deterministic:
        actions = out
    else:
        actions = out + log_std.exp() * torch.randn(out.shape, generator=generator)
    return actions, distribution_log_prob(actor, out, actions, log_std)


def build_policy(
    obs_dim: int, action_dim: int, discrete: bool, cfg: PolicyConfig, seed: int, task_dim: int = 0
) -> ActorCritic:
    """Construct an :class:`ActorCritic` with weights initialised from ``seed``.

    ``task_dim``: the family's ``onehot_size`` (the multitask architectures need it; with
    ``cfg.obs_norm`` it marks the entries left unnormalised; otherwise the MLP ignores it).
    """
    _check_task_dim(obs_dim, task_dim, cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ActorCritic(obs_dim, action_dim, discrete, cfg, task_dim)
