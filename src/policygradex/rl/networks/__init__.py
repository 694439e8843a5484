"""Policy and value networks: the plain MLP and four multitask architectures (issue 14).

=========  =====================================================================  ======================
``arch``   network                                                                ``experts`` (default)
=========  =====================================================================  ======================
``mlp``    ``depth`` linear layers on the whole observation (state + one-hot id)   — (not used)
``sm``     Soft Modularization (Yang et al. 2020), :mod:`.sm`                     modules per layer (2)
``care``   CARE (Sodhani et al. 2021), :mod:`.care`                               state encoders (6)
``paco``   PaCo (Sun et al. 2022), :mod:`.paco`                                   parameter sets K (5)
``moore``  MOORE (Hendawy et al. 2024), :mod:`.moore`                             orthogonal experts (4)
=========  =====================================================================  ======================

The defaults of ``experts`` are the MT10 settings of the papers (as also recorded by the Meta-World+
re-implementations): SM 2 modules per layer (MT50: 4), CARE 6 encoders (MT50: 10; mtrl's MT10 command
uses 4), PaCo K = 5, MOORE 4 experts (MT50: 6). Every hidden width is ``width``; ``depth`` counts the
linear layers along the main path (SM: ``depth − 2`` layers of modules after its two-layer state
embedding; CARE: the MLP after the mixture; PaCo: the composed MLP; MOORE: ``depth − 1`` per expert,
then the task's head).

The multitask architectures read the last ``task_dim`` entries of the observation as the one-hot task
id (an all-zero id is the average task: see :func:`.common.split_task`); the MLP reads the whole
observation as it always has.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

from torch import nn

from policygradex.rl.networks.care import CareNet
from policygradex.rl.networks.common import Activation, activation_module, layer_init
from policygradex.rl.networks.moore import MooreNet
from policygradex.rl.networks.paco import PacoNet
from policygradex.rl.networks.sm import SoftModularNet

Arch = Literal["mlp", "sm", "care", "paco", "moore"]
ARCHS: tuple[str, ...] = get_args(Arch)
DEFAULT_EXPERTS: dict[str, int] = {"sm": 2, "care": 6, "paco": 5, "moore": 4}
"""The default of ``experts`` per architecture (the papers' MT10 settings)."""
MIN_DEPTH: dict[str, int] = {"mlp": 1, "sm": 4, "care": 1, "paco": 1, "moore": 2}
"""The smallest ``depth`` each architecture is defined for (SM: 2 layers of modules; MOORE: 1 layer per
expert and the head)."""

__all__ = [
    "ARCHS", "Arch", "CareNet", "DEFAULT_EXPERTS", "MIN_DEPTH", "MooreNet", "PacoNet", "SoftModularNet",
    "build_network", "layer_init", "mlp",
]


def mlp(in_dim: int, out_dim: int, depth: int, width: int, activation: Activation, out_gain: float) -> nn.Sequential:
    """``depth`` linear layers with ``activation`` between them (orthogonal init; ``out_gain`` on the last)."""
    dims = [in_dim] + [width] * (depth - 1) + [out_dim]
    layers: list[nn.Module] = []
    for j in range(depth):
        last = j == depth - 1
        layers.append(layer_init(nn.Linear(dims[j], dims[j + 1]), gain=out_gain if last else math.sqrt(2)))
        if not last:
            layers.append(activation_module(activation))
    return nn.Sequential(*layers)


def build_network(
    arch: Arch, obs_dim: int, out_dim: int, task_dim: int, depth: int, width: int, activation: Activation,
    experts: int | None, out_gain: float,
) -> nn.Module:
    """The network ``arch`` mapping [..., obs_dim] observations to [..., out_dim].

    Args:
        arch: one of :data:`ARCHS`.
        obs_dim: observation size (the one-hot task id included).
        out_dim: output size (action logits or mean, or 1 for a value).
        task_dim: length of the task id at the end of the observation (unused by the MLP).
        depth, width, activation: see the module docstring.
        experts: modules per layer / encoders / parameter sets / experts (default :data:`DEFAULT_EXPERTS`).
        out_gain: init gain of the output layer (0.01 for a policy, 1 for a value).
    """
    if arch == "mlp":
        return mlp(obs_dim, out_dim, depth, width, activation, out_gain)
    k = experts if experts is not None else DEFAULT_EXPERTS[arch]
    if arch == "sm":
        return SoftModularNet(obs_dim, task_dim, out_dim, width, depth - 2, k, activation, out_gain)
    if arch == "care":
        return CareNet(obs_dim, task_dim, out_dim, width, depth, k, activation, out_gain)
    if arch == "paco":
        return PacoNet(obs_dim, task_dim, out_dim, width, depth, k, activation, out_gain)
    if arch == "moore":
        return MooreNet(obs_dim, task_dim, out_dim, width, depth, k, activation, out_gain)
    raise ValueError(f"unknown architecture {arch!r}; use one of {', '.join(ARCHS)}")
