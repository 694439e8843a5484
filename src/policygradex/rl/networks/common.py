"""Building blocks shared by the multitask architectures: initialisation, a stack of parallel linear
layers (modules, experts, encoders, parameter sets), the split of an observation into state and task id,
and Gram–Schmidt orthonormalisation.

Every block works on any number of leading batch dimensions, including none (one sample), so the
networks built from them run under ``torch.func.vmap(grad(...))`` unchanged.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

Activation = Literal["tanh", "relu"]


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weight init with the given gain and constant bias (the usual PPO init)."""
    nn.init.orthogonal_(layer.weight, gain)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)
    return layer


def activation_fn(name: Activation) -> Callable[[Tensor], Tensor]:
    """The hidden nonlinearity named ``name`` as a function."""
    return torch.tanh if name == "tanh" else torch.relu


def activation_module(name: Activation) -> nn.Module:
    """The hidden nonlinearity named ``name`` as a module (for ``nn.Sequential``)."""
    return nn.Tanh() if name == "tanh" else nn.ReLU()


class StackedLinear(nn.Module):
    """``n`` independent linear layers ``in_dim → out_dim`` held as one weight [n, in_dim, out_dim] and
    one bias [n, out_dim], applied with one ``einsum``.

    Each of the ``n`` weights is initialised orthogonally with ``gain`` (as :func:`layer_init`), biases
    at zero.
    """

    def __init__(self, n: int, in_dim: int, out_dim: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(n, out_dim))
        with torch.no_grad():
            for j in range(n):
                nn.init.orthogonal_(self.weight[j], gain)

    def shared(self, x: Tensor) -> Tensor:
        """Every layer on the same input. x: [..., in_dim] → [..., n, out_dim]."""
        return torch.einsum("...i,nio->...no", x, self.weight) + self.bias

    def forward(self, x: Tensor) -> Tensor:
        """Layer j on input j. x: [..., n, in_dim] → [..., n, out_dim]."""
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias


def stacked(layers: nn.ModuleList) -> list[StackedLinear]:
    """The :class:`StackedLinear` layers of ``layers``, typed as such."""
    out = list(layers)
    assert all(isinstance(m, StackedLinear) for m in out)
    return typing.cast(list[StackedLinear], out)


def split_task(obs: Tensor, task_dim: int) -> tuple[Tensor, Tensor]:
    """The state and the task context of observations that end with a one-hot task id.

    A one-hot id is the context as it is. An all-zero id (the held-out tasks of a meta-RL split carry
    one) becomes the uniform vector 1/T: such a task is treated as the average of the training tasks,
    so every task-conditioned part of a network (embeddings, composition vectors, task weights, heads)
    takes its mean over the T tasks, and the network never divides by or indexes with a missing id.

    Args:
        obs: [..., S + T] observations (state, then the id).
        task_dim: T, the length of the id.

    Returns:
        state [..., S] and context [..., T] (rows sum to 1 for one-hot and all-zero ids).
    """
    state, ctx = obs[..., :-task_dim], obs[..., -task_dim:]
    missing = (1.0 - ctx.sum(-1, keepdim=True)).clamp(min=0.0)
    return state, ctx + missing / task_dim


def gram_schmidt(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Orthonormalise k vectors per sample, in order (modified Gram–Schmidt).

    u_1 = x_1/‖x_1‖, u_i = r_i/‖r_i‖ with r_i = x_i − Σ_{j<i} ⟨x_i, u_j⟩ u_j (subtracted one u_j at a time).
    The norm is √(‖r‖² + eps²), so a zero residual (k > dim, or collinear vectors) gives a zero row with
    finite gradients instead of NaN.

    Args:
        x: [..., k, dim].

    Returns:
        [..., k, dim], rows orthonormal for each sample (when the k rows of x are independent).
    """
    basis: list[Tensor] = []
    for i in range(x.shape[-2]):
        r = x[..., i, :]
        for u in basis:
            r = r - (r * u).sum(-1, keepdim=True) * u
        basis.append(r / torch.sqrt(r.pow(2).sum(-1, keepdim=True) + eps**2))
    return torch.stack(basis, dim=-2)
