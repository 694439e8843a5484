"""Observation normalisation by running mean and variance, held as module *buffers* (issue 14, item 2).

The statistics live inside the policy (as buffers of the actor, read by the critic too), not in an
environment wrapper as in Stable-Baselines3's ``VecNormalize`` or CleanRL's ``NormalizeObservation``:
θ stays exactly the actor's parameters, and everything that runs the actor functionally — per-sample
gradient features, the Kronecker projection's layer factors, MAML's adapted parameters, ``log_prob``
through ``functional_call`` — sees the normalised input through the buffers without a change.

Only the state part of an observation is normalised: the one-hot task id at its end stays as it is
(a 0/1 id rescaled by per-column statistics would change with the task mixture of each batch).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CLIP = 10.0
"""Normalised entries are clipped to ±10, as in VecNormalize and CleanRL."""
EPS = 1e-8
"""Added to the variance under the square root (as in VecNormalize and CleanRL)."""


def merge_moments(
    mean: Tensor, var: Tensor, count: Tensor, batch_mean: Tensor, batch_var: Tensor, batch_count: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Mean and (population) variance of two sets of rows from each set's own (Chan et al. 1979).

    With ``count`` 0 the result is exactly the batch's moments, so the statistics after any sequence of
    updates equal ``numpy.mean``/``numpy.var`` of all rows seen.

    Args:
        mean, var: [S] the moments of the rows so far; count: [] their number.
        batch_mean, batch_var: [S] the new rows' moments; batch_count: their number (> 0).

    Returns:
        The merged mean [S], variance [S] and count [].
    """
    total = count + batch_count
    delta = batch_mean - mean
    new_mean = mean + delta * (batch_count / total)
    m2 = var * count + batch_var * batch_count + delta.pow(2) * (count * batch_count / total)
    return new_mean, m2 / total, total


class RunningObsNorm(nn.Module):
    """Running mean and variance of the first ``state_dim`` entries of observations; normalises them.

    Buffers (float64, so long trainings keep their precision; cast to the input's dtype when applied):
    ``mean`` [S], ``var`` [S] and ``count`` []. Before the first update the mean is 0 and the variance 1
    (the identity, up to the ±10 clip).

    Args:
        state_dim: S, the number of leading observation entries to normalise (the observation size less
            the task id's length).
    """

    def __init__(self, state_dim: int) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.register_buffer("mean", torch.zeros(state_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(state_dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    mean: Tensor
    var: Tensor
    count: Tensor

    def forward(self, obs: Tensor) -> Tensor:
        """clip((s − mean)/√(var + 1e-8), ±10) for the state s; the rest as it is. obs: [..., obs_dim] (any
        leading dimensions, none for one sample under ``vmap``) → the same shape and dtype."""
        s = self.state_dim
        state = obs[..., :s]
        z = (state - self.mean.to(obs.dtype)) / torch.sqrt(self.var.to(obs.dtype) + EPS)
        return torch.cat([z.clamp(-CLIP, CLIP), obs[..., s:]], dim=-1)

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Add the state part of the observations [B, obs_dim] to the running statistics (nothing for B = 0)."""
        if obs.shape[0] == 0:
            return
        x = obs[:, : self.state_dim].to(torch.float64)
        mean, var, count = merge_moments(
            self.mean, self.var, self.count, x.mean(0), x.var(0, unbiased=False), float(x.shape[0])
        )
        self.mean.copy_(mean)
        self.var.copy_(var)
        self.count.copy_(count)
