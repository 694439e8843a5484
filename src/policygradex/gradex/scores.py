"""Scores f(S, i): how the policy θ̂_S = θ* + Δθ_S performs on each task i of subset S (paper §2.4).

Two modes:

* ``"rollout"`` — the paper's "policy evaluation algorithm": run π_θ̂_S on task i and take the mean
  return (or success rate). Task i is always evaluated with the same seed (derived from the run seed
  and i), whichever subset it is in: common random numbers, so score differences between subsets
  come from Δθ_S and not from luck, and no score depends on the order or executor that ran it.
* ``"surrogate"`` — rollout-free: the importance-weighted first-order estimate
  f̂(S, i) = J_i(θ*) + mean_t [Â_t · (exp(g̃_tᵀ w_S) − 1)] over task i's stored transitions, using
  log π_θ̂(a|s) − log π_θ*(a|s) ≈ g̃ᵀw (exact in the projected space, paper §2.3). Milliseconds for
  all subsets; less faithful far from θ*.

:func:`score_objective_change` is a third, rollout-free score (issue 12; evidence.md points 1–3): the
first-order change of task i's surrogate objective under Δθ_S with the advantages centred per task,
f(S, i) = c_S · mean_t (Â_t − Ā_i) g̃_tᵀ w_S. It needs no return to move, so it is non-zero wherever
the advantages are, and it is not added to an episode return (no mixed units).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from policygradex.errors import ConfigError
from policygradex.gradex.features import perturbed_policy
from policygradex.rl.checkpoint import Checkpoint, load_checkpoint
from policygradex.rl.evaluate import evaluate
from policygradex.tasks.base import TaskFamily

ScoreMode = Literal["rollout", "surrogate", "objective"]
ObjectiveForm = Literal["linear", "exp"]


def task_eval_seed(seed: int, task: int) -> int:
    """The evaluation seed of task ``task`` (common to every subset)."""
    return int(np.random.SeedSequence([seed, 7919, task]).generate_state(1)[0] % (2**31))


def scale_deltas(deltas: Tensor, theta_norm: float, relative_norm: float | None) -> Tensor:
    """Rescale each Δθ row to ``relative_norm``·‖θ*‖ (None: leave as fitted). deltas: [m, p] → [m, p]."""
    if relative_norm is None:
        return deltas
    if relative_norm <= 0:
        raise ConfigError(f"relative_norm={relative_norm} must be positive (e.g. 0.01 for 1% of ‖θ*‖)")
    norms = deltas.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return deltas / norms * (relative_norm * theta_norm)


@dataclass(frozen=True)
class ScoreJob:
    """A chunk of subsets to score by rollouts (picklable, for any executor).

    Attributes:
        checkpoint: path of θ*.
        family: the family, or its registry name (a name for process workers, which rebuild it).
        subsets: (subset index, task indices) pairs.
        deltas: [len(subsets), p] float32 Δθ rows, in the same order.
        episodes: evaluation episodes per task.
        seed: the run seed (task seeds derive from it).
        deterministic: greedy actions instead of sampled ones.
    """

    checkpoint: str
    family: TaskFamily | str
    subsets: tuple[tuple[int, tuple[int, ...]], ...]
    deltas: np.ndarray
    episodes: int
    seed: int
    deterministic: bool = False


def _load(checkpoint: str, family: TaskFamily | str) -> tuple[Checkpoint, object]:
    """θ* and its family, loaded once per process per checkpoint *version* (path, size, mtime)."""
    import os

    if isinstance(family, TaskFamily):  # a family object (serial executor): used as given
        return load_checkpoint(checkpoint, family), family
    st = os.stat(checkpoint)
    return _load_cached(checkpoint, st.st_size, st.st_mtime_ns, family)


@functools.lru_cache(maxsize=4)
def _load_cached(checkpoint: str, size: int, mtime_ns: int, family_name: str) -> tuple[Checkpoint, object]:
    from policygradex import tasks

    family = tasks.make(family_name)
    return load_checkpoint(checkpoint, family), family


def score_rollouts(job: ScoreJob) -> dict[str, Any]:
    """Score every (subset, task) pair of ``job`` by rollouts.

    Returns:
        ``{"rows": [(subset index, task, f(S, i)), ...], "seconds": compute time of this job}``.
    """
    start = time.perf_counter()
    ckpt, family = _load(job.checkpoint, job.family)
    out = []
    for (index, members), delta in zip(job.subsets, job.deltas, strict=True):
        policy = perturbed_policy(ckpt.policy, torch.as_tensor(delta))
        for i in members:
            res = evaluate(policy, family, [i], job.episodes, task_eval_seed(job.seed, i), job.deterministic)  # type: ignore[arg-type]
            out.append((index, i, res.score(family.metric)[i]))  # type: ignore[attr-defined]
    return {"rows": out, "seconds": time.perf_counter() - start}


def score_surrogate(
    weights: Tensor,
    subsets: Sequence[Sequence[int]],
    grads: Sequence[Tensor],
    advantages: Sequence[Tensor],
    base_scores: Sequence[float],
    coef_scale: Tensor | None = None,
) -> np.ndarray:
    """Rollout-free f̂(S, i) for every subset and member task.

    Args:
        weights: [m, d] fitted coefficients w_S (Δθ_S = P w_S).
        subsets: m task lists.
        grads: per task, [N_i, d] projected gradients.
        advantages: per task, [N_i] advantages.
        base_scores: per task, J_i(θ*) (e.g. the meta-policy's mean return).
        coef_scale: optional [m] factor applied to each w_S (the same rescaling as Δθ).

    Returns:
        [m, n] array with f̂(S, i) for i ∈ S and NaN elsewhere.
    """
    n = len(grads)
    m = weights.shape[0]
    w = weights if coef_scale is None else weights * coef_scale[:, None]
    out = np.full((m, n), np.nan)
    for i in range(n):
        rows = [l for l, s in enumerate(subsets) if i in s]
        if not rows:
            continue
        log_ratio = grads[i].double() @ w[rows].double().T  # [N_i, |rows|]
        gain = (advantages[i].double()[:, None] * torch.expm1(log_ratio)).mean(0)
        out[rows, i] = base_scores[i] + gain.numpy()
    return out


def score_objective_change(
    weights: Tensor,
    subsets: Sequence[Sequence[int]],
    grads: Sequence[Tensor],
    advantages: Sequence[Tensor],
    coef_scale: Tensor | None = None,
    form: ObjectiveForm = "linear",
) -> np.ndarray:
    """First-order change of each member task's surrogate objective under Δθ_S (issue 12).

    With Â^c_t = Â_t − mean_{t'∈i} Â_{t'} (centred over task i's stored transitions; evidence.md,
    point 1: raw GAE has mean +8…+10 on solved tasks and ≈ 0 on failing ones, which would make the
    score mostly "does Δθ_S raise log π of the actions taken" on solved tasks) and v = c_S·w_S:

    * ``"linear"`` (default): f(S, i) = mean_t Â^c_t · g̃_tᵀ v, the paper's own linearisation
      r_t ≈ 1 + log r_t (§2.3). It equals c_S·⟨ḡ_i, w_S⟩ with ḡ_i = mean_t Â^c_t g̃_t, task i's
      policy-gradient direction, so it is exact arithmetic on the stored features, and because every
      Δθ_S is rescaled to the same norm the ranking of subsets within a task does not depend on
      ``relative_norm`` (evidence.md, point 4: the step size is unstudied). It does not saturate where
      the fitted step is large (the raw fits are 8.5–40% of ‖θ*‖).
    * ``"exp"``: f(S, i) = mean_t Â^c_t · (exp(g̃_tᵀ v) − 1), the importance-weighted change as in
      :func:`score_surrogate` (which, unlike this score, keeps the raw advantages and adds J_i(θ*)).
      Kept for comparison; its second-order part mean Â^c (g̃ᵀv)²/2 grows with the step size and is
      dominated by the few transitions with the largest |g̃ᵀv|.

    J_i(θ*) is left out: it is the same for every subset of task i, so a per-task affinity removes it
    anyway, and adding it to a per-step advantage mixes units (evidence.md, closing remark).

    Args:
        weights: [m, d] fitted coefficients w_S (Δθ_S = P w_S).
        subsets: m task lists.
        grads: per task, [N_i, d] projected gradients g̃_t.
        advantages: per task, [N_i] advantages Â_t (raw; centred here).
        coef_scale: optional [m] factor c_S applied to each w_S (the same rescaling as Δθ).
        form: ``"linear"`` or ``"exp"`` (above).

    Returns:
        [m, n] float64 array with f(S, i) for i ∈ S and NaN elsewhere.

    Raises:
        ConfigError: an unknown ``form`` or mismatched shapes.
    """
    if form not in ("linear", "exp"):
        raise ConfigError(f"form={form!r} is unknown; use 'linear' or 'exp'.")
    n = len(grads)
    if len(advantages) != n:
        raise ConfigError(f"{n} tasks of gradients but {len(advantages)} of advantages; pass one per task.")
    m = weights.shape[0]
    if len(subsets) != m or (coef_scale is not None and coef_scale.shape != (m,)):
        raise ConfigError(f"weights have {m} rows; pass {m} subsets and a coef_scale of shape [{m}].")
    w = weights.double() if coef_scale is None else weights.double() * coef_scale.double()[:, None]
    out = np.full((m, n), np.nan)
    for i in range(n):
        rows = [l for l, s in enumerate(subsets) if i in s]
        if not rows:
            continue
        g = grads[i].double()
        adv = advantages[i].double()
        if g.shape[0] != adv.shape[0]:
            raise ConfigError(
                f"task {i} has {g.shape[0]} gradient rows and {adv.shape[0]} advantages; they must match."
            )
        centred = adv - adv.mean()
        if form == "linear":
            direction = (centred[:, None] * g).mean(0)  # ḡ_i [d]
            out[rows, i] = (w[rows] @ direction).numpy()
        else:
            log_ratio = g @ w[rows].T  # [N_i, |rows|]
            out[rows, i] = (centred[:, None] * torch.expm1(log_ratio)).mean(0).numpy()
    return out


def objective_change_stderr(
    weights: Tensor,
    subsets: Sequence[Sequence[int]],
    grads: Sequence[Tensor],
    advantages: Sequence[Tensor],
    coef_scale: Tensor | None = None,
    centred: bool = True,
) -> np.ndarray:
    """Standard error of the linear :func:`score_objective_change` from the finite sample of transitions.

    The linear score is a mean over task i's N_i transitions of h_t = Â^c_t · g̃_tᵀ u, so its sampling
    standard error is std_t(h_t) / √N_i (ddof 1). With ``centred`` (default) u = v_S − v̄_i, v̄_i the
    mean of v_S over the subsets holding i: the error of f(S, i) − mean_S f(S, i), which is what the
    affinity and :func:`policygradex.gradex.affinity.no_signal_tasks` look at. Every subset of a task is
    scored on the same transitions, so their errors are strongly correlated and the error of the
    differences is much smaller than that of the level (u = v_S, ``centred=False``). Pass the per-task
    root mean square of the centred error over subsets as ``noise`` to ``no_signal_tasks``.

    Transitions are treated as independent; transitions of one episode are correlated, so the true error
    is larger (our choice: no episode-level correction, since the features do not keep episode
    boundaries).

    Args:
        weights: [m, d] fitted coefficients w_S.
        subsets: m task lists.
        grads: per task, [N_i, d] projected gradients g̃_t (N_i ≥ 2).
        advantages: per task, [N_i] advantages Â_t (raw; centred here).
        coef_scale: optional [m] factor c_S applied to each w_S.
        centred: the error of the score centred over the task's subsets (above), else of its level.

    Returns:
        [m, n] float64 array with the standard error for i ∈ S and NaN elsewhere.

    Raises:
        ConfigError: mismatched shapes, or a task with fewer than two transitions.
    """
    n = len(grads)
    m = weights.shape[0]
    if len(advantages) != n or len(subsets) != m or (coef_scale is not None and coef_scale.shape != (m,)):
        raise ConfigError(
            f"pass one advantage vector per task ({n}), one subset per weight row ({m}) and coef_scale [{m}]."
        )
    w = weights.double() if coef_scale is None else weights.double() * coef_scale.double()[:, None]
    out = np.full((m, n), np.nan)
    for i in range(n):
        rows = [l for l, s in enumerate(subsets) if i in s]
        if not rows:
            continue
        g = grads[i].double()
        adv = advantages[i].double()
        if g.shape[0] != adv.shape[0] or g.shape[0] < 2:
            raise ConfigError(
                f"task {i} has {g.shape[0]} gradient rows and {adv.shape[0]} advantages; "
                "they must match and be at least 2."
            )
        v = w[rows] - w[rows].mean(0) if centred else w[rows]  # [|rows|, d]
        h = (adv - adv.mean())[:, None] * (g @ v.T)  # [N_i, |rows|]
        out[rows, i] = (h.std(0, unbiased=True) / np.sqrt(g.shape[0])).numpy()
    return out
