from __future__ import annotations

import numpy as np
import pytest

from policygradex.errors import ConfigError
from policygradex.grouping.cluster import (
    canonical_partition,
    exhaustive_cluster,
    partition_objective,
    sdp_cluster,
    spectral_cluster,
)


def _planted(seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    """Noisy 10×10 block-diagonal affinity (blocks of 3, 4, 3) with a permuted task order."""
    rng = np.random.default_rng(seed)
    blocks = [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    base = np.zeros((10, 10))
    for block in blocks:
        base[np.ix_(block, block)] = 1.0
    noise = rng.normal(0.0, 0.15, size=(10, 10))
    u = base + (noise + noise.T) / 2
    perm = rng.permutation(10)  # task perm[a] of the new order is task a of the old one
    u = u[np.ix_(perm, perm)]
    where = np.argsort(perm)
    return u, canonical_partition([[int(where[i]) for i in block] for block in blocks])


def _is_partition(groups: list[list[int]], n: int, k: int) -> bool:
    return (
        len(groups) == k
        and all(len(g) > 0 for g in groups)
        and sorted(i for g in groups for i in g) == list(range(n))
        and groups == canonical_partition(groups)
    )


def test_all_methods_recover_planted_blocks() -> None:
    u, truth = _planted()
    assert truth != [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]  # the permutation hides the blocks
    fixed = sdp_cluster(u, k=3)
    assert fixed.groups == truth and fixed.method == "sdp" and fixed.k == 3
    assert fixed.X is not None and fixed.X.shape == (10, 10)
    np.testing.assert_allclose(fixed.X.sum(1), 1.0, atol=1e-5)
    assert np.trace(fixed.X) == pytest.approx(3.0, abs=1e-5)
    assert fixed.relaxation_value is not None and fixed.relaxation_value >= fixed.objective - 1e-6
    penalised = sdp_cluster(u, lam=1.0)
    assert penalised.k == 3 and penalised.groups == truth
    assert spectral_cluster(u, 3).groups == truth
    best = exhaustive_cluster(u, 3)
    assert best.groups == truth
    assert best.objective == pytest.approx(partition_objective(u, truth))


def test_sdp_rounding_is_close_to_exhaustive_on_random_matrices() -> None:
    n, exact, cases = 6, 0, 0
    for seed in range(5):
        a = np.random.default_rng(100 + seed).normal(size=(n, n))
        u = (a + a.T) / 2
        for k in (2, 3):
            sdp = sdp_cluster(u, k=k)
            best = exhaustive_cluster(u, k)
            assert _is_partition(sdp.groups, n, k)
            assert sdp.objective == pytest.approx(partition_objective(u, sdp.groups))
            # The relaxation bounds every k-group partition from above.
            assert sdp.relaxation_value is not None and sdp.relaxation_value >= best.objective - 1e-5
            assert sdp.objective >= best.objective - 0.03 * n * np.ptp(u)
            exact += sdp.objective >= best.objective - 1e-9
            cases += 1
    assert exact >= cases - 2


def test_partition_objective_by_hand() -> None:
    u = np.array([[1.0, 2.0, 0.0], [2.0, 3.0, 1.0], [0.0, 1.0, 5.0]])
    # Group {0, 1}: (1 + 2 + 2 + 3) / 2 = 4; group {2}: 5.
    assert partition_objective(u, [[0, 1], [2]]) == pytest.approx(9.0)
    x = np.zeros((3, 3))
    x[:2, :2] = 0.5
    x[2, 2] = 1.0
    assert partition_objective(u, [[2], [1, 0]]) == pytest.approx(float((u * x).sum()))
    # A constant shift of U adds c·n to every partition.
    assert partition_objective(u + 2.0, [[0, 1], [2]]) == pytest.approx(9.0 + 2.0 * 3)
    with pytest.raises(ConfigError, match="partition"):
        partition_objective(u, [[0, 1]])
    with pytest.raises(ConfigError, match="partition"):
        partition_objective(u, [[0, 1], [1, 2]])
    with pytest.raises(ConfigError, match="partition"):
        partition_objective(u, [[0, 1, 2], []])


def test_k_one_and_k_n() -> None:
    u, _ = _planted(1)
    n = u.shape[0]
    singletons = [[i] for i in range(n)]
    for k, expected in ((1, [list(range(n))]), (n, singletons)):
        assert sdp_cluster(u, k=k).groups == expected
        assert spectral_cluster(u, k).groups == expected
    assert exhaustive_cluster(u[:6, :6], 1).groups == [list(range(6))]
    assert exhaustive_cluster(u[:6, :6], 6).groups == [[i] for i in range(6)]
    assert sdp_cluster(u, lam=100.0).groups == [list(range(n))]
    assert sdp_cluster(u, lam=-100.0).groups == singletons


def test_bad_input_raises() -> None:
    u, _ = _planted()
    with pytest.raises(ConfigError, match="square"):
        sdp_cluster(u[:, :9], k=2)
    bad = u.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ConfigError, match="NaN"):
        spectral_cluster(bad, 2)
    skew = u.copy()
    skew[0, 1] += 0.5
    with pytest.raises(ConfigError, match="symmetric"):
        exhaustive_cluster(skew, 2)
    for k in (0, 11):
        with pytest.raises(ConfigError, match="k="):
            sdp_cluster(u, k=k)
        with pytest.raises(ConfigError, match="k="):
            spectral_cluster(u, k)
    with pytest.raises(ConfigError, match="exactly one"):
        sdp_cluster(u, k=3, lam=1.0)
    with pytest.raises(ConfigError, match="exactly one"):
        sdp_cluster(u)
    with pytest.raises(ConfigError, match="lam"):
        sdp_cluster(u, lam=float("inf"))
    with pytest.raises(ConfigError, match="solver"):
        sdp_cluster(u, k=3, solver="NOT_A_SOLVER")
    big = np.eye(13)
    with pytest.raises(ConfigError, match="n=13"):
        exhaustive_cluster(big, 3)
