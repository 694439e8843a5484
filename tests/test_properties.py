"""Property-based tests (Hypothesis) where a property is the specification (issue 17, item 2).

Examples are derandomised (the same on every run) and few, so the default suite stays fast.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from policygradex import io
from policygradex.errors import ConfigError
from policygradex.gradex.affinity import affinity, task_zscores
from policygradex.gradex.subsets import coverage, membership, sample_subsets
from policygradex.grouping.baselines import random_partition
from policygradex.grouping.cluster import (
    canonical_partition,
    exhaustive_cluster,
    partition_objective,
    sdp_cluster,
    spectral_cluster,
)

FAST = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False)


# ---- affinity ----------------------------------------------------------------------------------------
@st.composite
def score_tables(draw):
    """(scores [m, n] with NaN outside the subset, membership [m, n]) with every pair covered: all pairs
    as subsets, plus random extra subsets, in a random order."""
    n = draw(st.integers(2, 6))
    subsets = [set(p) for p in itertools.combinations(range(n), 2)]
    extra = draw(st.lists(st.sets(st.integers(0, n - 1), min_size=1, max_size=n), max_size=6))
    subsets += extra
    subsets = draw(st.permutations(subsets))
    held = np.zeros((len(subsets), n), dtype=bool)
    for row, s in enumerate(subsets):
        held[row, sorted(s)] = True
    values = draw(st.lists(finite, min_size=held.size, max_size=held.size))
    scores = np.where(held, np.array(values).reshape(held.shape), np.nan)
    return scores, held


@FAST
@given(table=score_tables(), data=st.data())
def test_affinity_is_symmetric_and_invariant_to_task_relabelling(table, data) -> None:
    scores, held = table
    m, n = held.shape
    perm = np.array(data.draw(st.permutations(range(n))))
    for mode in ("aggregate", "task"):
        u, cov = affinity(scores, held, mode)
        assert u.shape == cov.shape == (n, n)
        np.testing.assert_allclose(u, u.T, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(cov, held.T.astype(int) @ held.astype(int))
        # Task perm[a] becomes task a: U and the coverage are permuted the same way.
        u2, cov2 = affinity(scores[:, perm], held[:, perm], mode)
        np.testing.assert_allclose(u2, u[np.ix_(perm, perm)], rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(cov2, cov[np.ix_(perm, perm)])
        # The order of the subsets does not matter either.
        rows = np.array(data.draw(st.permutations(range(m))))
        np.testing.assert_allclose(affinity(scores[rows], held[rows], mode)[0], u, rtol=1e-9, atol=1e-9)
        if mode == "task":
            assert np.all(np.diag(u) == 0.0)


@FAST
@given(table=score_tables(), data=st.data())
def test_aggregate_affinity_is_a_pair_mean_of_subset_means(table, data) -> None:
    """U_ij = mean over subsets holding i and j of mean_{t∈S} f(S, t), computed by loops here."""
    scores, held = table
    u, _ = affinity(scores, held, "aggregate")
    m, n = held.shape
    for i in range(n):
        for j in range(n):
            rows = [l for l in range(m) if held[l, i] and held[l, j]]
            expected = np.mean([np.nanmean(scores[l]) for l in rows])
            assert u[i, j] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # Adding c to every score adds c to every entry.
    c = data.draw(finite)
    np.testing.assert_allclose(affinity(scores + c, held, "aggregate")[0], u + c, rtol=1e-9, atol=1e-7)


@FAST
@given(table=score_tables(), data=st.data())
def test_task_affinity_ignores_each_tasks_scale_and_offset(table, data) -> None:
    """Per-target-task z-scores: f(S, i) → a_i·f(S, i) + b_i with a_i > 0 changes nothing."""
    scores, held = table
    n = held.shape[1]
    a = np.array(data.draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n)))
    b = np.array(data.draw(st.lists(finite, min_size=n, max_size=n)))
    z = task_zscores(scores, held)
    # Skip tables where a task's scores are nearly constant: there the z-score is 0/0 and rounding decides.
    spread = np.array([np.ptp(scores[held[:, i], i]) for i in range(n)])
    assume(np.all((spread == 0) | (spread > 1e-3)))
    np.testing.assert_allclose(task_zscores(scores * a + b, held), z, atol=1e-6)
    np.testing.assert_allclose(affinity(scores * a + b, held, "task")[0], affinity(scores, held, "task")[0], atol=1e-6)


# ---- partitions ------------------------------------------------------------------------------------
@st.composite
def affinities(draw, max_n: int = 7):
    n = draw(st.integers(1, max_n))
    values = draw(st.lists(st.floats(-10.0, 10.0), min_size=n * n, max_size=n * n))
    a = np.array(values).reshape(n, n)
    return (a + a.T) / 2


def _assert_valid(groups, n: int, k: int) -> None:
    assert len(groups) == k
    assert all(len(g) > 0 for g in groups)
    assert sorted(i for g in groups for i in g) == list(range(n))
    assert groups == canonical_partition(groups)


@SLOWER
@given(u=affinities(), data=st.data())
def test_every_clustering_method_returns_a_valid_partition_into_k_groups(u, data) -> None:
    n = len(u)
    k = data.draw(st.integers(1, n))
    best = exhaustive_cluster(u, k)
    for res in (best, sdp_cluster(u, k=k), spectral_cluster(u, k, seed=data.draw(st.integers(0, 5)))):
        _assert_valid(res.groups, n, k)
        assert res.k == k
        assert res.objective == pytest.approx(partition_objective(u, res.groups))
        # Nothing beats the exhaustive search.
        assert res.objective <= best.objective + 1e-9 * max(1.0, abs(best.objective))
    lam = data.draw(st.floats(-5.0, 5.0))
    pen = sdp_cluster(u, lam=lam)
    assert 1 <= pen.k <= n
    _assert_valid(pen.groups, n, pen.k)


@FAST
@given(n=st.integers(1, 30), data=st.data())
def test_random_partitions_are_valid_and_respect_sizes(n, data) -> None:
    k = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**31 - 1))
    groups = random_partition(n, k, seed)
    _assert_valid(groups, n, k)
    assert groups == random_partition(n, k, seed)
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), min_size=k - 1, max_size=k - 1))) if k > 1 else []
    sizes = np.diff([0, *cuts, n]).tolist()
    sized = random_partition(n, k, seed, sizes=sizes)
    _assert_valid(sized, n, k)
    assert sorted(map(len, sized)) == sorted(sizes)


# ---- subsets -----------------------------------------------------------------------------------------
@FAST
@given(
    n=st.integers(2, 12),
    m=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    min_coverage=st.integers(0, 4),
    data=st.data(),
)
def test_sampled_subsets_cover_every_pair(n, m, seed, min_coverage, data) -> None:
    size = data.draw(st.integers(2, n))
    pairs = n * (n - 1) // 2
    # Each top-up raises the coverage of a least-covered pair, so min_coverage·pairs top-ups always suffice.
    subsets = sample_subsets(n, m, size, seed, min_coverage=min_coverage, max_extra=min_coverage * pairs)
    assert m <= len(subsets) <= m + min_coverage * pairs
    assert [s.index for s in subsets] == list(range(len(subsets)))
    for s in subsets:
        assert len(s.tasks) == size and list(s.tasks) == sorted(set(s.tasks)) and 0 <= s.tasks[0] and s.tasks[-1] < n
    counts = np.zeros((n, n), dtype=int)
    for s in subsets:
        for i in s.tasks:
            for j in s.tasks:
                counts[i, j] += 1
    np.testing.assert_array_equal(coverage(subsets, n), counts)
    np.testing.assert_array_equal(membership(subsets, n).sum(1), size)
    assert counts[np.triu_indices(n, 1)].min() >= min_coverage
    # Top-ups only happen while some pair is short; the random subsets do not depend on m.
    if len(subsets) > m:
        plain = coverage(subsets[:m], n)
        assert plain[np.triu_indices(n, 1)].min() < min_coverage
    shorter = sample_subsets(n, max(1, m // 2), size, seed, min_coverage=0)
    assert [s.tasks for s in shorter] == [s.tasks for s in subsets[: len(shorter)]]
    assert [s.seed for s in shorter] == [s.seed for s in subsets[: len(shorter)]]


@FAST
@given(n=st.integers(3, 8), m=st.integers(1, 5), seed=st.integers(0, 1000))
def test_too_few_top_ups_is_refused_not_silently_under_covered(n, m, seed) -> None:
    try:
        subsets = sample_subsets(n, m, 2, seed, min_coverage=2, max_extra=0)
    except ConfigError as e:
        assert "min_coverage=2" in str(e)
    else:
        assert coverage(subsets, n)[np.triu_indices(n, 1)].min() >= 2


# ---- atomic writes -----------------------------------------------------------------------------------
class Injected(Exception):
    pass


def _leftovers(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != name)


WRITERS = {
    "text": (io.write_text, lambda p: p.read_bytes().decode(), st.text(max_size=200)),
    "json": (io.write_json, lambda p: io.read_json(p), st.dictionaries(st.text(max_size=5), st.integers(), max_size=5)),
    "npy": (io.write_npy, lambda p: np.load(p).tolist(), st.lists(st.floats(allow_nan=False), max_size=50)),
}


@FAST
@given(
    kind=st.sampled_from(sorted(WRITERS)),
    data=st.data(),
    existed=st.booleans(),
    where=st.sampled_from(["write", "fsync", "replace", "interrupt", "none"]),
)
def test_atomic_writes_leave_the_old_file_or_none_and_no_temporary_file(kind, data, existed, where) -> None:
    write, read, contents = WRITERS[kind]
    old, new = data.draw(contents), data.draw(contents)
    if kind == "npy":
        old, new = np.array(old, dtype=np.float64), np.array(new, dtype=np.float64)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        path = Path(tmp) / "sub" / f"artifact.{kind}"
        if existed:
            write(path, old)
            before = path.read_bytes()
        real_fsync, real_replace, real_save = os.fsync, os.replace, np.save

        def fail_fsync(fd):
            raise Injected("disk full")

        def fail_replace(src, dst):
            raise Injected("rename failed")

        def half_save(f, array, **kw):
            f.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt

        if where == "fsync":
            mp.setattr(os, "fsync", fail_fsync)
        elif where == "replace":
            mp.setattr(os, "replace", fail_replace)
        elif where == "interrupt":
            mp.setattr(np, "save", half_save)
        if where == "write":
            # The caller's own code fails half-way through writing the temporary file.
            with pytest.raises(Injected), io.atomic_path(path) as t:
                t.write_bytes(b"half")
                raise Injected("caller failed")
        elif where == "none":
            write(path, new)
        elif where == "interrupt" and kind != "npy":
            mp.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(KeyboardInterrupt()))
            with pytest.raises(KeyboardInterrupt):
                write(path, new)
        else:
            with pytest.raises((Injected, KeyboardInterrupt)):
                write(path, new)
        mp.undo()
        assert os.fsync is real_fsync and os.replace is real_replace and np.save is real_save
        assert _leftovers(path.parent, path.name) == []  # no temporary file, whatever happened
        if where == "none":
            got = read(path)
            assert got == (new.tolist() if kind == "npy" else new)
        elif existed:
            assert path.read_bytes() == before
        else:
            assert not path.exists()
