from __future__ import annotations

import math

import pytest
import torch

from policygradex.errors import ConfigError
from policygradex.gradex.projection import CHUNK_ROWS, GaussianProjection


def test_deterministic_across_instances() -> None:
    a = GaussianProjection(p=3000, d=16, seed=7).matrix()
    b = GaussianProjection(p=3000, d=16, seed=7).matrix()
    c = GaussianProjection(p=3000, d=16, seed=8).matrix()
    assert a.shape == (3000, 16) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_chunks_are_independent_of_p() -> None:
    # Each chunk has its own generator, so P for a smaller p is a prefix of P for a larger p.
    small = GaussianProjection(p=CHUNK_ROWS + 5, d=8, seed=3).matrix()
    large = GaussianProjection(p=3 * CHUNK_ROWS, d=8, seed=3).matrix()
    assert torch.equal(small, large[: CHUNK_ROWS + 5])
    proj = GaussianProjection(p=3 * CHUNK_ROWS, d=8, seed=3)
    assert torch.equal(proj.chunk(2), large[2 * CHUNK_ROWS :])


def test_project_does_not_depend_on_batching() -> None:
    proj = GaussianProjection(p=2500, d=32, seed=1)
    g = torch.randn(20, 2500, generator=torch.Generator().manual_seed(0))
    full = proj.project(g)
    assert full.shape == (20, 32)
    # Equal up to float32 round-off (BLAS may sum in a different order for a different batch size).
    torch.testing.assert_close(proj.project(g[5:12]), full[5:12], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(full, g @ proj.matrix(), rtol=1e-5, atol=1e-4)


def test_lift_is_adjoint_of_project() -> None:
    proj = GaussianProjection(p=2100, d=24, seed=2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(2100, generator=gen, dtype=torch.float64)
    w = torch.randn(24, generator=gen, dtype=torch.float64)
    lhs = torch.dot(proj.lift(w), g)
    rhs = torch.dot(w, proj.project(g))
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert proj.lift(torch.zeros(3, 5, 24)).shape == (3, 5, 2100)


def test_uncached_path_equals_cached_path() -> None:
    cached = GaussianProjection(p=5000, d=20, seed=4)
    chunked = GaussianProjection(p=5000, d=20, seed=4, cache_bytes=0)
    assert cached.cached and not chunked.cached
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(6, 5000, generator=gen)
    w = torch.randn(6, 20, generator=gen)
    torch.testing.assert_close(chunked.project(g), cached.project(g), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(chunked.lift(w), cached.lift(w), rtol=0, atol=0)
    assert chunked._cache is None
    assert torch.equal(chunked.matrix(), cached.matrix())


def test_johnson_lindenstrauss_preserves_geometry() -> None:
    p, d, count = 5000, 400, 50
    proj = GaussianProjection(p=p, d=d, seed=0)
    x = torch.randn(count, p, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    # Give the vectors different scales and some shared direction so inner products are not all ~0.
    x = (x + 0.5 * x[:1]) * torch.logspace(-2, 2, count, dtype=torch.float64)[:, None]
    y = proj.project(x).double()
    ratio = y.norm(dim=1) ** 2 / x.norm(dim=1) ** 2
    # ‖Pᵀx‖²/‖x‖² ~ χ²_d/d: std sqrt(2/d) ≈ 0.071, so 0.35 is a ~5σ band for every vector.
    assert (ratio - 1).abs().max() <= 0.35
    assert abs(ratio.mean().item() - 1) <= 3 * math.sqrt(2 / d) / math.sqrt(count) * 3
    norms = x.norm(dim=1)
    err = (y @ y.T - x @ x.T) / (norms[:, None] * norms[None, :])
    assert err.abs().max() <= 0.35


def test_wrong_scaling_would_fail_the_bound() -> None:
    # The JL bound above is not vacuous: N(0, 1) entries inflate norms by a factor d.
    x = torch.randn(5, 5000, generator=torch.Generator().manual_seed(0))
    big = x @ (GaussianProjection(p=5000, d=400).matrix() * math.sqrt(400))
    assert ((big.norm(dim=1) ** 2 / x.norm(dim=1) ** 2) - 1).abs().min() > 0.35


def test_bad_input_raises() -> None:
    with pytest.raises(ConfigError):
        GaussianProjection(p=0)
    with pytest.raises(ConfigError):
        GaussianProjection(p=10, d=0)
    with pytest.raises(ConfigError):
        GaussianProjection(p=10, seed=-1)
    proj = GaussianProjection(p=10, d=4)
    with pytest.raises(ConfigError):
        proj.project(torch.zeros(2, 11))
    with pytest.raises(ConfigError):
        proj.lift(torch.zeros(2, 5))


def test_pickle_drops_the_cache() -> None:
    import pickle

    proj = GaussianProjection(p=3000, d=16, seed=9)
    full = proj.matrix()
    assert proj._cache is not None
    payload = pickle.dumps(proj)
    assert len(payload) < 10_000
    clone = pickle.loads(payload)
    assert clone == proj and clone._cache is None
    assert torch.equal(clone.matrix(), full)
