"""Estimator study (issue #12): every score mode × affinity mode × step size on one finished run, against
its ground truth and beside the ground truth's agreement with itself (the noise ceiling).

    .venv/bin/python benchmarks/bench_estimator.py --run DIR [--norms 0.01,0.02,0.1] [--executor process]

DIR is a run of `policygradex run` with `policygradex ground-truth --run DIR` done (and, for the
ceiling, `ground-truth --seed 1` and `noise-ceiling`). θ*, the features, the subsets and the fitted w_S
are the run's own; each variant only re-scores and re-clusters, so the differences are the estimator's.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch

from policygradex import pipeline, studies
from policygradex.analysis.agreement import nmi
from policygradex.execute import FileContents, make_executor
from policygradex.gradex.affinity import affinity, no_signal_tasks
from policygradex.gradex.features import flatten
from policygradex.gradex.projection import GaussianProjection
from policygradex.gradex.scores import (
    ScoreJob,
    scale_deltas,
    score_objective_change,
    score_surrogate,
)
from policygradex.gradex.subsets import first_occurrences, membership
from policygradex.grouping.cluster import cluster
from policygradex.io import atomic_path, read_json, write_text
from policygradex.rl.checkpoint import load_checkpoint

MODES = ("task", "aggregate", "regression")


def surrogate_variant(weights: torch.Tensor, subsets, grads, advantages, base_scores, coef_scale: torch.Tensor,  # type: ignore[no-untyped-def]
                      kind: str, eps: float = 0.2) -> np.ndarray:
    """Two importance-weighted alternatives to `score_surrogate` tried for issue 11 (item 4), kept here
    (not in the library) because neither beat it on the families measured:

    * ``"clipped"``: J_i(θ*) + mean_t [min(r_t Â_t, clip(r_t, 1 ± eps) Â_t) − Â_t], PPO's pessimistic
      clipped ratio (r_t = exp(g̃_tᵀ c_S w_S));
    * ``"self-normalised"``: J_i(θ*) + Σ_t r_t Â_t / Σ_t r_t − mean_t Â_t (weights normalised to sum to one).
    """
    w = weights.double() * coef_scale.double()[:, None]
    out = np.full((len(subsets), len(grads)), np.nan)
    for i in range(len(grads)):
        rows = [l for l, s in enumerate(subsets) if i in s]
        if not rows:
            continue
        r = (grads[i].double() @ w[rows].T).exp()  # [N_i, |rows|]
        a = advantages[i].double()[:, None]
        if kind == "clipped":
            gain = torch.minimum(r * a, r.clamp(1 - eps, 1 + eps) * a).mean(0) - a.mean()
        else:
            gain = (r * a).sum(0) / r.sum(0) - a.mean()
        out[rows, i] = base_scores[i] + gain.numpy()
    return out


def rollout_scores(run, subsets, deltas: np.ndarray, episodes: int, executor, key: str) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """Rollout f(S, i) [m, n] for the given Δθ rows (the run's own task seeds: common random numbers).

    Cached in DIR/estimator_cache/<key>.npz (table and compute seconds), so a rerun of the study (after a
    kill, or to add variants) does not repeat minutes of rollouts.
    """
    cache = run.store.dir / "estimator_cache" / f"{key}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["table"], float(z["seconds"])
    table, seconds = _rollout_scores(run, subsets, deltas, episodes, executor)
    with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, table=table, seconds=seconds)
    return table, seconds


def _rollout_scores(run, subsets, deltas: np.ndarray, episodes: int, executor) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    distinct = sorted(first_occurrences(subsets).values())
    chunk = 8
    jobs = [
        ScoreJob(str(run.store.meta_checkpoint), pipeline.job_family(run), tuple((l, subsets[l]) for l in distinct[c : c + chunk]),
                 deltas[distinct[c : c + chunk]], episodes, pipeline.stage_seed(run.seed, "estimate"))
        for c in range(0, len(distinct), chunk)
    ]
    scored, seconds = {}, 0.0
    meta = FileContents.read(run.store.meta_checkpoint)  # θ* sent once, as the pipeline sends it
    for res in executor.map(pipeline.score_chunk, jobs, meta):
        seconds += res["seconds"]
        for a, b, v in res["rows"]:
            scored[(int(a), int(b))] = float(v)
    table = np.full((len(subsets), run.family.n), np.nan)
    for l, i, v in pipeline.expand_rows(subsets, scored):
        table[l, i] = v
    return table, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--norms", default="0.01,0.02,0.1", help="extra ‖Δθ‖/‖θ*‖ for rollout scores (the run's own is always in)")
    ap.add_argument("--episodes", type=int, default=0, help="also rollout scores with this many episodes (0: no)")
    ap.add_argument("--executor", default="serial", choices=["serial", "process"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--note", default="", help="conditions (e.g. what else ran on the cores)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = pipeline.reopen(args.run)
    store, cfg, n = run.store, run.config, run.family.n
    subsets = store.load_subsets()
    member = membership(subsets, n)
    truth = store.load_truth()
    truth_scores, _ = pipeline.load_scores(run, truth_seed=0)
    truth_U = store.load_truth_affinity(n)
    feats = store.load_features(n)
    grads = [feats[i]["grads"] for i in range(n)]
    adv = [feats[i]["advantages"] for i in range(n)]
    weights = store.load_weights()
    pj = store.load_projection()
    raw = GaussianProjection(p=pj["p"], d=pj["d"], seed=pj["seed"]).lift(weights.float())
    theta_norm = float(flatten(load_checkpoint(store.meta_checkpoint, run.family).policy.actor_params()).norm())
    base_norm = cfg.estimate.relative_norm
    ex = make_executor(args.executor, args.workers)
    base_eval = run.metric_of(store.load_meta_eval())
    shared = pipeline.estimate_compute_seconds(run)

    def coef(norm: float | None) -> torch.Tensor:
        scaled = scale_deltas(raw, theta_norm, norm)
        return scaled.norm(dim=1) / raw.norm(dim=1).clamp_min(1e-12)

    tables: list[tuple[str, str, np.ndarray, float]] = []  # (score label, norm label, table, scoring seconds)
    own, _ = pipeline.load_scores(run)
    tables.append((f"rollout ({cfg.estimate.episodes} ep.)", f"{base_norm:g}", own, shared["scoring"]))
    for norm in [float(x) for x in args.norms.split(",") if x]:
        t = rollout_scores(run, subsets, scale_deltas(raw, theta_norm, norm).numpy().astype(np.float32), cfg.estimate.episodes, ex,
                           f"rollout_ep{cfg.estimate.episodes}_norm{norm:g}")
        tables.append((f"rollout ({cfg.estimate.episodes} ep.)", f"{norm:g}", *t))
    if args.episodes:
        t = rollout_scores(run, subsets, scale_deltas(raw, theta_norm, base_norm).numpy().astype(np.float32), args.episodes, ex,
                           f"rollout_ep{args.episodes}_norm{base_norm:g}")
        tables.append((f"rollout ({args.episodes} ep.)", f"{base_norm:g}", *t))
    start = time.perf_counter()
    sur = score_surrogate(weights, subsets, grads, adv, [base_eval[i] for i in range(n)], coef(base_norm))
    tables.append(("surrogate (rollout-free)", f"{base_norm:g}", sur, time.perf_counter() - start))
    start = time.perf_counter()
    obj = score_objective_change(weights, subsets, grads, adv, coef(base_norm))
    tables.append(("objective change (rollout-free)", "any", obj, time.perf_counter() - start))
    for kind in ("clipped", "self-normalised"):
        start = time.perf_counter()
        alt = surrogate_variant(weights, subsets, grads, adv, [base_eval[i] for i in range(n)], coef(base_norm), kind)
        label = "surrogate, clipped ratio ε = 0.2" if kind == "clipped" else "surrogate, self-normalised"
        tables.append((f"{label} (rollout-free)", f"{base_norm:g}", alt, time.perf_counter() - start))

    rows = []
    for score, norm, table, seconds in tables:
        flat = no_signal_tasks(table, member).tasks
        a, b, task = studies.distinct_pairs(run, table, truth_scores)
        from policygradex.analysis.agreement import score_agreement

        corr = score_agreement(a, b, task)
        ra, rb, rtask = studies.distinct_pairs(run, table, own)  # agreement with the run's own rollout scores
        vs_rollout = score_agreement(ra, rb, rtask)
        for mode in MODES:
            U, _ = affinity(table, member, mode)
            groups = cluster(U, cfg.k, cfg.method, seed=run.seed).groups
            iu = np.triu_indices(n, 1)
            rows.append({
                "score": score, "norm": norm, "affinity": mode, "groups": groups,
                "nmi": nmi(groups, truth["groups"], n),
                "planted": nmi(groups, run.family.planted_groups, n) if run.family.planted_groups else None,
                "spearman": corr["spearman"], "within": corr["spearman_within_task"],
                "u_corr": float(np.corrcoef(U[iu], truth_U[iu])[0, 1]) if np.std(U[iu]) > 0 else None,
                "flat": flat, "seconds": shared["features"] + shared["fits"] + seconds,
                "roll_within": vs_rollout["spearman_within_task"] if table is not own else None,
            })

    def f(x, spec=".3f"):  # type: ignore[no-untyped-def]
        return "–" if x is None else format(x, spec)

    ceiling = read_json(store.noise_ceiling_path) if store.noise_ceiling_path.exists() else None
    e = cfg.estimate
    lines = [
        f"# Estimator study: `{run.family.full_name}`",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_estimator.py --run DIR --norms {args.norms}"
        f"{' --episodes ' + str(args.episodes) if args.episodes else ''} --executor {args.executor}` on the run "
        f"`policygradex run --family {run.family.name} --seed {cfg.seed}` (defaults: meta-training {cfg.meta.ppo.total_steps:,} "
        f"env steps, {cfg.features.samples_per_task} samples per task, d = {cfg.features.d}, m = {len(subsets)} subsets of "
        f"{e.subset_size}, λ = {e.l2}, k = {cfg.k}, {cfg.method}). Machine for the variants: "
        f"{platform.processor() or platform.machine()}, 1 torch thread per process, torch {torch.__version__}."
        + (f" Conditions: {args.note}" if args.note else ""),
        "",
        f"Ground truth: θ* fine-tuned on each of the {truth['distinct_subsets']} distinct subsets "
        f"({truth['compute_seconds']:.0f} compute-seconds), true groups `{truth['groups']}`.",
        "",
    ]
    if ceiling:
        lines += [
            "**Noise ceiling** (the ground truth against a second ground truth with other training seeds and "
            f"evaluation episodes, `ground_truth_seed1` groups `{ceiling['groups'][1]}`): NMI {ceiling['nmi']:.3f} "
            f"(random partitions {ceiling['nmi_random']:.3f}), Spearman {f(ceiling['spearman'])}, within task "
            f"{f(ceiling['spearman_within_task'])}, affinity correlation {f(ceiling['affinity_correlation'])}.",
            "",
        ]
    lines += [
        "| score | ‖Δθ‖/‖θ*‖ | affinity | groups | NMI vs truth | " + ("NMI vs planted | " if run.family.planted_groups else "")
        + "Spearman | within task | U corr. vs truth | within task vs rollout | no-signal tasks | compute (s) | speed-up vs truth |",
        "|---|---|---|---|---:|" + ("---:|" if run.family.planted_groups else "") + "---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['score']} | {r['norm']} | {r['affinity']} | `{r['groups']}` | {r['nmi']:.3f} | "
            + (f"{f(r['planted'])} | " if run.family.planted_groups else "")
            + f"{f(r['spearman'])} | {f(r['within'])} | {f(r['u_corr'])} | {f(r['roll_within'])} | {r['flat'] or '–'} | "
            f"{r['seconds']:.0f} | {truth['compute_seconds'] / max(r['seconds'], 1e-9):.0f}× |"
        )
    lines += [
        "",
        "Spearman: estimated vs true f(S, i) over the distinct (subset, task) pairs; within task: each task's mean "
        "removed first (the affinity is made of these differences). U corr.: correlation of the upper triangles of "
        "the variant's affinity and the true (task z-scored) affinity. Within task vs rollout: the same within-task "
        f"Spearman against the run's own rollout scores ({cfg.estimate.episodes} episodes, ‖Δθ‖ = {base_norm:g}·‖θ*‖; "
        "how well a rollout-free score reproduces them). Compute: features + fits + scoring, summed "
        f"over processes; the ground truth took {truth['compute_seconds']:.0f} s (speed-up: its compute over the "
        "variant's).",
        "",
    ]
    out = args.out or Path(f"benchmarks/results/estimator_{run.family.name}.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
