"""Gaussian random projection of per-sample gradients (paper §2.2).

The projection matrix P ∈ R^{p×d} has i.i.d. N(0, 1/d) entries, so for any fixed x ∈ R^p,
E‖Pᵀx‖² = ‖x‖² and inner products are preserved up to O(1/√d) (Johnson–Lindenstrauss).

P is defined chunk by chunk: rows [c·CHUNK_ROWS, (c+1)·CHUNK_ROWS) come from their own
``torch.Generator`` seeded from ``(seed, c)``. Any chunk can therefore be rebuilt on its own, P for a
smaller p is a prefix of P for a larger p, and results never depend on how a caller batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from policygradex.errors import ConfigError

CHUNK_ROWS = 2048
"""Rows of P generated from one seeded generator. Changing it changes P: it is part of the definition."""

DEFAULT_CACHE_BYTES = 512 * 2**20
"""Keep the full P in memory when it needs at most this many bytes (512 MiB)."""


def _chunk_seed(seed: int, chunk: int) -> int:
    """A 63-bit torch seed for chunk ``chunk`` of the projection with seed ``seed``."""
    lo, hi = np.random.SeedSequence([seed, chunk]).generate_state(2, dtype=np.uint32)
    return ((int(hi) << 32) | int(lo)) & (2**63 - 1)


@dataclass(frozen=True)
class GaussianProjection:
    """A seeded p×d Gaussian projection with entries N(0, 1/d), generated in row chunks.

    Attributes:
        p: parameter count (rows of P).
        d: projection dimension (columns of P); the paper uses 400.
        seed: non-negative seed; together with ``CHUNK_ROWS`` it fixes P.
        dtype: dtype P is stored and multiplied in; inputs are cast to it. Samples are always
            drawn in float32 (then cast), so P does not depend on ``dtype`` beyond rounding.
        cache_bytes: keep the full P in memory if it takes at most this many bytes; otherwise
            every call regenerates P chunk by chunk and never holds the whole matrix.
    """

    p: int
    d: int = 400
    seed: int = 0
    dtype: torch.dtype = torch.float32
    cache_bytes: int = DEFAULT_CACHE_BYTES
    _cache: Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.p < 1:
            raise ConfigError(f"projection p={self.p} must be a positive parameter count.")
        if self.d < 1:
            raise ConfigError(f"projection d={self.d} must be positive; the paper uses d=400.")
        if self.seed < 0:
            raise ConfigError(f"projection seed={self.seed} must be non-negative.")
        if not self.dtype.is_floating_point:
            raise ConfigError(
                f"projection dtype={self.dtype} must be a floating-point dtype such as torch.float32."
            )

    def __getstate__(self) -> dict[str, object]:
        # Send the definition, not the cached matrix, to other processes (it is rebuilt on first use).
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    @property
    def num_chunks(self) -> int:
        """Number of row chunks of P."""
        return math.ceil(self.p / CHUNK_ROWS)

    @property
    def cached(self) -> bool:
        """Whether the full P is kept in memory (it fits in ``cache_bytes``)."""
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        return self.p * self.d * itemsize <= self.cache_bytes

    def chunk(self, c: int) -> Tensor:
        """Rows ``[c·CHUNK_ROWS, min((c+1)·CHUNK_ROWS, p))`` of P, built from their own generator.

        Args:
            c: chunk index in ``[0, num_chunks)``.

        Returns:
            Tensor of shape ``[rows, d]`` (CPU, ``dtype``).
        """
        if not 0 <= c < self.num_chunks:
            raise ConfigError(f"chunk index {c} is outside [0, {self.num_chunks}); pass a valid chunk index.")
        gen = torch.Generator(device="cpu").manual_seed(_chunk_seed(self.seed, c))
        # Always draw a full chunk and slice, so row r of P does not depend on p.
        block = torch.randn(CHUNK_ROWS, self.d, generator=gen, dtype=torch.float32)
        rows = min(CHUNK_ROWS, self.p - c * CHUNK_ROWS)
        return (block[:rows] / math.sqrt(self.d)).to(self.dtype)

    def matrix(self, device: torch.device | str | None = None) -> Tensor:
        """The full P (mainly for tests; uses the cache when allowed).

        Returns:
            Tensor of shape ``[p, d]``.
        """
        if self.cached:
            return self._full(device)
        return torch.cat([self.chunk(c) for c in range(self.num_chunks)]).to(device)

    def _full(self, device: torch.device | str | None) -> Tensor:
        device = torch.device("cpu") if device is None else torch.device(device)
        cache = self._cache
        if cache is None:
            cache = torch.cat([self.chunk(c) for c in range(self.num_chunks)])
        if cache.device != device:
            cache = cache.to(device)
        object.__setattr__(self, "_cache", cache)
        return cache

    def project(self, g: Tensor) -> Tensor:
        """Project gradients: ``g @ P``.

        Args:
            g: per-sample gradients, shape ``[..., p]`` (typically ``[B, p]``).

        Returns:
            Projected gradients g̃ = Pᵀg, shape ``[..., d]``, in ``dtype``.

        Raises:
            ConfigError: if the last dimension of ``g`` is not ``p``.
        """
        if g.shape[-1] != self.p:
            raise ConfigError(
                f"gradient last dimension {g.shape[-1]} does not match projection p={self.p}; "
                "build the projection with the policy's parameter count."
            )
        g = g.to(self.dtype)
        if self.cached:
            return g @ self._full(g.device)
        out = g.new_zeros((*g.shape[:-1], self.d))
        for c in range(self.num_chunks):
            start = c * CHUNK_ROWS
            block = self.chunk(c).to(g.device)
            out += g[..., start : start + block.shape[0]] @ block
        return out

    def lift(self, w: Tensor) -> Tensor:
        """Map a d-space vector back to parameter space: ``P @ w`` (the adjoint of :meth:`project`).

        Args:
            w: coefficients, shape ``[..., d]``.

        Returns:
            Parameter-space vectors ``P w``, shape ``[..., p]``, in ``dtype``.

        Raises:
            ConfigError: if the last dimension of ``w`` is not ``d``.
        """
        if w.shape[-1] != self.d:
            raise ConfigError(
                f"coefficient last dimension {w.shape[-1]} does not match projection d={self.d}; "
                "pass vectors fitted with this projection."
            )
        w = w.to(self.dtype)
        if self.cached:
            return w @ self._full(w.device).T
        return torch.cat([w @ self.chunk(c).to(w.device).T for c in range(self.num_chunks)], dim=-1)
