"""Random projections of per-sample gradients (paper §2.2): g̃ = Pᵀg with P ∈ R^{p×d}, E[PPᵀ] = I.

Two projections, chosen by ``features.projection``:

* ``"gaussian"`` (:class:`GaussianProjection`, the paper's): P has i.i.d. N(0, 1/d) entries, so for any
  fixed x ∈ R^p, E‖Pᵀx‖² = ‖x‖² and inner products are preserved up to O(1/√d)
  (Johnson–Lindenstrauss). P is defined chunk by chunk: rows [c·CHUNK_ROWS, (c+1)·CHUNK_ROWS) come from
  their own ``torch.Generator`` seeded from ``(seed, c)``. Any chunk can therefore be rebuilt on its
  own, P for a smaller p is a prefix of P for a larger p, and results never depend on how a caller
  batches. Applying it needs the p-dimensional per-sample gradient (2·N·p·d flops).
* ``"kronecker"`` (:class:`KroneckerProjection`, issue 11): P's rows are split by parameter block (one
  per ``nn.Linear`` of the actor, plus the Gaussian head's log-std). The rows of a wide Linear layer
  hold Khatri–Rao columns: column j is vec(u_j v_jᵀ)/√d (u_j over the layer's outputs, v_j over its
  inputs and the bias), so a per-sample weight gradient
  δ_t [a_t; 1]ᵀ projects to (U_lᵀ δ_t) ⊙ (V_lᵀ [a_t; 1]) / √d without ever being formed, and the
  adjoint is Δθ_l = U_l·diag(w)·V_lᵀ / √d. Narrow layers and the log-std get dense N(0, 1/d) blocks.
  Every block spans all d columns and the blocks are independent, so the layers' sketches are
  *summed* into d dimensions and E[PPᵀ] = I still holds: an unbiased inner-product sketch. Summing
  rather than concatenating gives every layer all d columns (no split of d to tune); the price is
  that each Linear layer costs 2·N·(out + in + 1)·d flops instead of a share of that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

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


# ---- the structured (Khatri–Rao) projection ---------------------------------------------------------
ProjectionKind = Literal["gaussian", "kronecker"]
FactorDistribution = Literal["rademacher", "gaussian"]

DENSE_WIDTH = 8
"""A Linear layer with at most this many outputs gets a dense Gaussian block instead of Khatri–Rao
columns. Its output gradients δ_t then lie in a space of at most this many dimensions (a 2-action
categorical head's δ_t always points along (1, −1)), so the rank-one columns see nearly parallel
vectors and their inner-product estimates have several times the dense block's variance; such a block
is also small (out·(in+1) rows), so projecting it densely costs little."""

_KRON_KEY = 0x4B52
"""Separates the Khatri–Rao projection's random streams from the Gaussian projection's chunk streams."""

SUPPORTED_ACTIVATIONS = (nn.Tanh, nn.ReLU)


@dataclass(frozen=True)
class Block:
    """One block of θ, in :func:`~policygradex.gradex.features.flatten` order.

    A Linear layer's block is its weight [out, inp] (row-major) followed by its bias [out]; a vector
    parameter's block (the Gaussian head's ``log_std``) is the vector itself, with ``inp = 0``.

    Attributes:
        name: module path of the Linear layer (``"net.0"``) or the parameter's name (``"log_std"``).
        out: output features of the layer, or the vector's length.
        inp: input features of the layer; 0 for a vector parameter.
        kron: Khatri–Rao columns (True) or a dense Gaussian block (False; always for a vector).
    """

    name: str
    out: int
    inp: int
    kron: bool

    @property
    def size(self) -> int:
        """Entries of θ in this block: out·(inp+1) for a Linear layer, out for a vector."""
        return self.out * (self.inp + 1) if self.inp else self.out

    def param_names(self) -> tuple[str, ...]:
        """The ``named_parameters`` names this block covers, in order."""
        return (f"{self.name}.weight", f"{self.name}.bias") if self.inp else (self.name,)


def kronecker_blocks(actor: nn.Module, dense_width: int = DENSE_WIDTH) -> tuple[Block, ...]:
    """The parameter blocks of an MLP actor for :class:`KroneckerProjection`.

    The actor must be the library's MLP :class:`~policygradex.rl.policy.Actor`: an ``nn.Sequential``
    ``net`` of ``nn.Linear`` layers (with bias) and Tanh/ReLU activations, and for a Gaussian head a
    ``log_std`` vector; nothing else may hold parameters.

    Args:
        actor: the actor (its architecture only).
        dense_width: Linear layers with at most this many outputs get a dense block.

    Returns:
        The blocks in ``actor.named_parameters()`` order.

    Raises:
        ConfigError: the actor has a module or parameter the structured projection cannot decompose.
    """
    from policygradex.rl.policy import Actor

    fix = "use --features.projection gaussian for this policy"
    if type(actor) is not Actor:
        raise ConfigError(
            f"the kronecker projection decomposes only the MLP actor (policygradex.rl.policy.Actor), not a "
            f"{type(actor).__name__}; {fix}"
        )
    if not isinstance(actor.net, nn.Sequential):
        raise ConfigError(
            f"the kronecker projection decomposes only the MLP network (arch 'mlp'), not this actor's "
            f"{type(actor.net).__name__}; {fix}"
        )
    blocks = []
    for name, module in actor.net.named_children():
        if isinstance(module, nn.Linear):
            if module.bias is None:
                raise ConfigError(f"the kronecker projection needs a bias in every Linear layer, and net.{name} has none; {fix}")
            kron = module.out_features > dense_width
            blocks.append(Block(f"net.{name}", module.out_features, module.in_features, kron))
        elif not isinstance(module, SUPPORTED_ACTIVATIONS):
            raise ConfigError(
                f"the kronecker projection cannot decompose the actor's module net.{name} "
                f"({type(module).__name__}; it handles Linear layers with Tanh/ReLU between them); {fix}"
            )
    log_std = getattr(actor, "log_std", None)
    if isinstance(log_std, nn.Parameter):
        blocks.append(Block("log_std", log_std.numel(), 0, False))
    # θ's order is named_parameters' (the actor's own log_std comes before net's layers)
    by_name = {b.param_names()[0]: b for b in blocks}
    ordered = [by_name[n] for n, _ in actor.named_parameters() if n in by_name]
    expected = [n for b in ordered for n in b.param_names()]
    names = [n for n, _ in actor.named_parameters()]
    if names != expected:
        extra = sorted(set(names) - set(expected)) or names
        raise ConfigError(
            f"the kronecker projection cannot decompose the actor's parameter {extra[0]!r} (it handles the "
            f"Linear layers of actor.net and log_std); {fix}"
        )
    return tuple(ordered)


def _block_seed(seed: int, block: int) -> int:
    """A 63-bit torch seed for block ``block`` of the Khatri–Rao projection with seed ``seed``."""
    lo, hi = np.random.SeedSequence([seed, _KRON_KEY, block]).generate_state(2, dtype=np.uint32)
    return ((int(hi) << 32) | int(lo)) & (2**63 - 1)


@dataclass(frozen=True)
class KroneckerProjection:
    """A seeded structured p×d projection, block by block, that never forms a p-dimensional gradient.

    For a Khatri–Rao block (a Linear layer with weight [out, in] and bias), P's rows for that layer are
    the columns vec(u_j v_jᵀ) / √d, j = 1..d: Δθ_l = P_l w is the [out, in+1] matrix U·diag(w)·Vᵀ / √d
    (weight, then bias in the last column), and the per-sample gradient δ_t [a_t; 1]ᵀ projects to
    (Uᵀδ_t) ⊙ (Vᵀ[a_t; 1]) / √d. With U, V of i.i.d. zero-mean unit-variance entries,
    E[(u⊗v)(u⊗v)ᵀ] = I, so E⟨Pᵀx, Pᵀy⟩ = ⟨x, y⟩ for any x, y: an unbiased inner-product sketch like the
    Gaussian projection's, with a larger variance (rank-one columns). Dense blocks have i.i.d.
    N(0, 1/d) entries. Each block has its own generator seeded from ``(seed, block index)``.

    Attributes:
        blocks: θ's blocks in flatten order (:func:`kronecker_blocks` of the actor).
        d: projection dimension; every block spans all d columns and their sketches are summed.
        seed: non-negative seed.
        factors: distribution of the entries of U and V: ``"rademacher"`` (±1, the default: its fourth
            moment is 1 against the Gaussian's 3, so the estimates vary less; measured in
            ``benchmarks/results/features.md``) or ``"gaussian"`` (N(0, 1)).
    """

    blocks: tuple[Block, ...]
    d: int = 400
    seed: int = 0
    factors: FactorDistribution = "rademacher"
    _cache: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ConfigError("a kronecker projection needs at least one parameter block; pass kronecker_blocks(actor).")
        if self.d < 1:
            raise ConfigError(f"projection d={self.d} must be positive; the paper uses d=400.")
        if self.seed < 0:
            raise ConfigError(f"projection seed={self.seed} must be non-negative.")
        if self.factors not in ("rademacher", "gaussian"):
            raise ConfigError(f"projection factors={self.factors!r} must be 'rademacher' or 'gaussian'.")
        for b in self.blocks:
            if b.out < 1 or b.inp < 0 or (b.kron and b.inp < 1):
                raise ConfigError(f"projection block {b} has invalid sizes; pass kronecker_blocks(actor).")

    def __getstate__(self) -> dict[str, object]:
        # Send the definition, not the generated factors, to other processes (rebuilt on first use).
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    @property
    def p(self) -> int:
        """Parameter count (rows of P)."""
        return sum(b.size for b in self.blocks)

    def offsets(self) -> list[int]:
        """Start of each block in θ, and p at the end: ``[0, size_0, size_0 + size_1, ..., p]``."""
        out = [0]
        for b in self.blocks:
            out.append(out[-1] + b.size)
        return out

    def factor(self, index: int) -> tuple[Tensor, Tensor]:
        """Block ``index``'s random factors, built from its own generator (and cached).

        Returns:
            Khatri–Rao block: ``(U [out, d] / √d, V [inp+1, d])``; dense block: ``(P_b [size, d], empty)``
            with N(0, 1/d) entries. float32, CPU.
        """
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        b = self.blocks[index]
        gen = torch.Generator(device="cpu").manual_seed(_block_seed(self.seed, index))
        scale = 1.0 / math.sqrt(self.d)
        if b.kron:
            U, V = (self._draw(rows, gen) for rows in (b.out, b.inp + 1))
            pair = (U * scale, V)
        else:
            pair = (torch.randn(b.size, self.d, generator=gen) * scale, torch.empty(0))
        self._cache[index] = pair
        return pair

    def _draw(self, rows: int, gen: torch.Generator) -> Tensor:
        if self.factors == "gaussian":
            return torch.randn(rows, self.d, generator=gen)
        return torch.randint(0, 2, (rows, self.d), generator=gen).float().mul_(2).sub_(1)

    def project(self, g: Tensor) -> Tensor:
        """Project explicit gradients: ``Pᵀg`` (the reference path; features use :meth:`project_layers`).

        Args:
            g: gradients, shape ``[B, p]`` (or ``[p]``), in flatten order.

        Returns:
            ``[B, d]`` (or ``[d]``), float32.

        Raises:
            ConfigError: if the last dimension of ``g`` is not ``p``.
        """
        if g.shape[-1] != self.p:
            raise ConfigError(
                f"gradient last dimension {g.shape[-1]} does not match projection p={self.p}; "
                "build the projection with the policy's parameter count."
            )
        lead = g.shape[:-1]
        g = g.reshape(-1, self.p).float()
        out = g.new_zeros((g.shape[0], self.d))
        off = self.offsets()
        for k, b in enumerate(self.blocks):
            seg = g[:, off[k] : off[k + 1]]
            A, B = self.factor(k)
            if not b.kron:
                out += seg @ A
                continue
            # [B, out, in+1] per-sample gradient matrix: weight then the bias as the last column
            mat = torch.cat([seg[:, : b.out * b.inp].reshape(-1, b.out, b.inp), seg[:, b.out * b.inp :, None]], dim=2)
            out += ((mat @ B) * A).sum(1)  # Σ_{o,i} U[o,j]·G[o,i]·V[i,j]
        return out.reshape(*lead, self.d)

    def project_layers(self, parts: Sequence[tuple[Tensor, Tensor | None]]) -> Tensor:
        """Project per-sample gradients given by their factors, never forming them.

        Args:
            parts: one entry per block, in order: ``(δ [N, out], a [N, inp])`` for a Linear layer (the
                output gradients and the layer inputs: the weight gradient is δ aᵀ, the bias gradient
                δ), or ``(g [N, out], None)`` for a vector parameter.

        Returns:
            g̃ [N, d] = Σ_blocks (Uᵀδ) ⊙ (Vᵀ[a; 1]) (Khatri–Rao) or g_b P_b (dense), float32.
        """
        if len(parts) != len(self.blocks):
            raise ConfigError(f"got {len(parts)} gradient parts for a projection of {len(self.blocks)} blocks; pass one per block.")
        out: Tensor | None = None
        for k, (b, (delta, a)) in enumerate(zip(self.blocks, parts, strict=True)):
            A, B = self.factor(k)
            delta = delta.float()
            if b.kron:
                assert a is not None
                # [a; 1] @ V without concatenating: a @ V[:in] + V[in]
                term = (delta @ A).mul_(torch.addmm(B[b.inp], a.float(), B[: b.inp]))
            elif a is None:
                term = delta @ A
            else:
                n = delta.shape[0]
                g = torch.cat([(delta[:, :, None] * a.float()[:, None, :]).reshape(n, -1), delta], dim=1)
                term = g @ A
            out = term if out is None else out.add_(term)
        assert out is not None
        return out

    def lift(self, w: Tensor) -> Tensor:
        """Map d-space vectors back to parameter space: ``P @ w`` (the adjoint of :meth:`project`).

        A Khatri–Rao block's part is U·diag(w)·Vᵀ / √d; P is never formed.

        Args:
            w: coefficients, shape ``[..., d]``.

        Returns:
            ``[..., p]`` float32, in flatten order.

        Raises:
            ConfigError: if the last dimension of ``w`` is not ``d``.
        """
        if w.shape[-1] != self.d:
            raise ConfigError(
                f"coefficient last dimension {w.shape[-1]} does not match projection d={self.d}; "
                "pass vectors fitted with this projection."
            )
        lead = w.shape[:-1]
        w = w.reshape(-1, self.d).float()
        parts = []
        for k, b in enumerate(self.blocks):
            A, B = self.factor(k)
            if not b.kron:
                parts.append(w @ A.T)
                continue
            mat = (A[None] * w[:, None, :]) @ B.T  # [K, out, in+1] = U diag(w_k) Vᵀ
            parts.append(torch.cat([mat[:, :, : b.inp].reshape(len(w), -1), mat[:, :, b.inp]], dim=1))
        return torch.cat(parts, dim=1).reshape(*lead, self.p)

    def record(self) -> dict[str, Any]:
        """The definition as JSON data (``features/projection.json``): rebuilt by :func:`from_record`."""
        return {
            "kind": "kronecker", "p": self.p, "d": self.d, "seed": self.seed, "factors": self.factors,
            "blocks": [[b.name, b.out, b.inp, b.kron] for b in self.blocks],
        }


Projection = GaussianProjection | KroneckerProjection
"""Either projection: both have ``p``, ``d``, ``seed``, ``project`` and ``lift``."""


def make_projection(kind: ProjectionKind, actor: nn.Module, d: int, seed: int) -> Projection:
    """The projection ``kind`` for ``actor``'s parameters.

    Raises:
        ConfigError: an unknown kind, or (``"kronecker"``) an actor it cannot decompose.
    """
    if kind == "gaussian":
        return GaussianProjection(p=sum(v.numel() for v in actor.parameters()), d=d, seed=seed)
    if kind == "kronecker":
        return KroneckerProjection(kronecker_blocks(actor), d=d, seed=seed)
    raise ConfigError(f"projection {kind!r} is unknown; choose 'gaussian' or 'kronecker'.")


def projection_record(proj: Projection) -> dict[str, Any]:
    """The definition of ``proj`` as JSON data (``kind``, ``p``, ``d``, ``seed``, and the blocks)."""
    if isinstance(proj, KroneckerProjection):
        return proj.record()
    return {"kind": "gaussian", "p": proj.p, "d": proj.d, "seed": proj.seed}


def from_record(record: dict[str, Any]) -> Projection:
    """Rebuild the projection a run stored in ``features/projection.json``.

    A record without ``kind`` (runs made before issue 11) is the Gaussian projection.

    Raises:
        ConfigError: a record that does not define a projection.
    """
    kind = record.get("kind", "gaussian")
    try:
        if kind == "gaussian":
            return GaussianProjection(p=int(record["p"]), d=int(record["d"]), seed=int(record["seed"]))
        if kind == "kronecker":
            blocks = tuple(Block(str(n), int(o), int(i), bool(k)) for n, o, i, k in record["blocks"])
            proj = KroneckerProjection(blocks, d=int(record["d"]), seed=int(record["seed"]), factors=record.get("factors", "rademacher"))
            if "p" in record and int(record["p"]) != proj.p:
                raise ConfigError(f"the projection record says p={record['p']} but its blocks hold {proj.p} parameters")
            return proj
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"the projection record lacks or mistypes {e}; delete features/ and rerun the features stage") from None
    raise ConfigError(f"projection kind {kind!r} is unknown; delete features/ and rerun the features stage")
