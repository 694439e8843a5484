"""Estimator study (issue #12): every score mode × affinity mode × step size on one finished run, against
its ground truth and beside the ground truth's agreement with itself (the noise ceiling).

    .venv/bin/python benchmarks/bench_estimator.py --run DIR [--norms 0.01,0.02,0.1] [--executor process]

DIR is a run of `policygradex run` with `policygradex ground-truth --run DIR` done (and, for the
ceiling, `ground-truth --seed 1` and `noise-ceiling`). θ*, the features, the subsets and the fitted w_S
are the run's own; each variant only re-scores and re-clusters, so the differences are the estimator's.

With ``--projections gaussian,kronecker`` it is the projection study of issue 11 instead: for each
projection, a variant run directory DIR/studies/projection-<kind>/ holds the run's θ* and subsets with
features recomputed under that projection (same rollouts: the same feature seed) and its own fits; each
projection × score mode (``--scores rollout,surrogate``) is then scored, clustered with the run's
affinity mode and compared with the ground truth, with the first-order approximation error of its
directions (``approx-error`` on the variant). ``--projection-draws J`` repeats it for J seeds of P on the
same transitions. Variants, their approximation errors and rollout scores are kept in DIR/studies/, so a rerun
only re-tabulates (delete DIR/studies/projection-* to measure again). Writes
``benchmarks/results/studies_projection_<family>.md``.

    .venv/bin/python benchmarks/bench_estimator.py --run DIR --projections gaussian,kronecker --scores rollout,surrogate
"""

from __future__ import annotations

import argparse
import platform
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from policygradex import pipeline, studies
from policygradex.analysis.agreement import nmi
from policygradex.execute import FileContents, make_executor
from policygradex.gradex.affinity import affinity, no_signal_tasks
from policygradex.gradex.features import collect_features, flatten
from policygradex.gradex.projection import from_record, make_projection, projection_record
from policygradex.gradex.scores import (
    ScoreJob,
    scale_deltas,
    score_objective_change,
    score_surrogate,
)
from policygradex.gradex.subsets import first_occurrences, membership
from policygradex.gradex.surrogate import fit_subsets
from policygradex.grouping.cluster import cluster
from policygradex.io import atomic_path, read_json, write_json, write_text
from policygradex.rl.checkpoint import load_checkpoint
from policygradex.rundir import read_config

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


def variant_rows(run: pipeline.Run, norms: str, episodes: int, executor) -> list[dict]:  # type: ignore[no-untyped-def]
    """One row per score mode × step size × affinity mode of the study on ``run`` (re-scored from its own
    θ*, features and fits): its grouping, NMI to the truth and to the planted groups, agreement with the
    truth and with the run's rollout scores, no-signal tasks and compute seconds."""
    store, cfg, n = run.store, run.config, run.family.n
    if cfg.estimate.score != "rollout":
        raise SystemExit(f"error: the run {run.dir} scored f(S, i) by '{cfg.estimate.score}'; the estimator study compares "
                         "every variant with the run's own rollout scores: make it with --estimate.score rollout")
    subsets = store.load_subsets()
    member = membership(subsets, n)
    has_truth = store.has_truth()  # without one, only the agreement with the run's rollout scores is reported
    truth = store.load_truth() if has_truth else None
    truth_scores = pipeline.load_scores(run, truth_seed=0)[0] if has_truth else None
    truth_U = store.load_truth_affinity(n) if has_truth else None
    feats = store.load_features(n)
    grads = [feats[i]["grads"] for i in range(n)]
    adv = [feats[i]["advantages"] for i in range(n)]
    weights = store.load_weights()
    pj = store.load_projection()
    raw = from_record(pj).lift(weights.float())
    theta_norm = float(flatten(load_checkpoint(store.meta_checkpoint, run.family).policy.actor_params()).norm())
    base_norm = cfg.estimate.relative_norm
    ex = executor
    base_eval = run.metric_of(store.load_meta_eval())
    shared = pipeline.estimate_compute_seconds(run)

    def coef(norm: float | None) -> torch.Tensor:
        scaled = scale_deltas(raw, theta_norm, norm)
        return scaled.norm(dim=1) / raw.norm(dim=1).clamp_min(1e-12)

    tables: list[tuple[str, str, np.ndarray, float]] = []  # (score label, norm label, table, scoring seconds)
    own, _ = pipeline.load_scores(run)
    tables.append((f"rollout ({cfg.estimate.episodes} ep.)", f"{base_norm:g}", own, shared["scoring"]))
    for norm in [float(x) for x in norms.split(",") if x]:
        t = rollout_scores(run, subsets, scale_deltas(raw, theta_norm, norm).numpy().astype(np.float32), cfg.estimate.episodes, ex,
                           f"rollout_ep{cfg.estimate.episodes}_norm{norm:g}")
        tables.append((f"rollout ({cfg.estimate.episodes} ep.)", f"{norm:g}", *t))
    if episodes:
        t = rollout_scores(run, subsets, scale_deltas(raw, theta_norm, base_norm).numpy().astype(np.float32), episodes, ex,
                           f"rollout_ep{episodes}_norm{base_norm:g}")
        tables.append((f"rollout ({episodes} ep.)", f"{base_norm:g}", *t))
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
        from policygradex.analysis.agreement import score_agreement

        corr = score_agreement(*studies.distinct_pairs(run, table, truth_scores)) if truth_scores is not None else {}
        ra, rb, rtask = studies.distinct_pairs(run, table, own)  # agreement with the run's own rollout scores
        vs_rollout = score_agreement(ra, rb, rtask)
        for mode in MODES:
            U, _ = affinity(table, member, mode)
            groups = cluster(U, cfg.k, cfg.method, seed=run.seed).groups
            iu = np.triu_indices(n, 1)
            rows.append({
                "score": score, "norm": norm, "affinity": mode, "groups": groups,
                "nmi": nmi(groups, truth["groups"], n) if truth else None,
                "planted": nmi(groups, run.family.planted_groups, n) if run.family.planted_groups else None,
                "spearman": corr.get("spearman"), "within": corr.get("spearman_within_task"),
                "u_corr": float(np.corrcoef(U[iu], truth_U[iu])[0, 1]) if truth_U is not None and np.std(U[iu]) > 0 else None,
                "flat": flat, "seconds": shared["features"] + shared["fits"] + seconds,
                "roll_within": vs_rollout["spearman_within_task"] if table is not own else None,
                "roll_spearman": vs_rollout["spearman"] if table is not own else None,
            })

    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="the run to study (not with --over-seeds)")
    ap.add_argument("--over-seeds", type=Path, default=None,
                    help="study every run DIR/seed_<s>/ and tabulate each variant's mean and 95%% CI over the seeds")
    ap.add_argument("--family", default=None, help="with --over-seeds: make the missing runs of this family")
    ap.add_argument("--seeds", type=int, default=0, help="with --over-seeds and --family: seeds 0..N-1 (runs made if missing)")
    ap.add_argument("--train", default="",
                    help="with --over-seeds: also train the groups of these variants like the pipeline's own "
                         "(SCORE:NORM:AFFINITY, comma-separated, e.g. surrogate:0.05:task,rollout:0.1:task) and "
                         "compare their mean return with the runs' own (rollout-scored) grouping's, paired by seed")
    ap.add_argument("--norms", default="0.01,0.02,0.1", help="extra ‖Δθ‖/‖θ*‖ for rollout scores (the run's own is always in)")
    ap.add_argument("--episodes", type=int, default=0, help="also rollout scores with this many episodes (0: no)")
    ap.add_argument("--executor", default="serial", choices=["serial", "process"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--note", default="", help="conditions (e.g. what else ran on the cores)")
    ap.add_argument("--projections", default="", help="the projection study (issue 11): e.g. gaussian,kronecker")
    ap.add_argument("--scores", default="rollout,surrogate", help="score modes of the projection study")
    ap.add_argument("--projection-draws", type=int, default=1, help="draws of P per projection (seeds) in the projection study")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.projections:
        if args.run is None:
            ap.error("--projections needs --run DIR")
        projection_study(args)
        return
    if args.over_seeds:
        over_seeds(args)
        return
    if args.run is None:
        ap.error("--run DIR (a finished run) or --over-seeds DIR is required")
    run = pipeline.reopen(args.run)
    rows = variant_rows(run, args.norms, args.episodes, make_executor(args.executor, args.workers))
    store, cfg = run.store, run.config
    subsets = store.load_subsets()
    truth = store.load_truth() if store.has_truth() else None
    base_norm = cfg.estimate.relative_norm

    def f(x, spec=".3f"):  # type: ignore[no-untyped-def]
        return "–" if x is None else format(x, spec)

    ceiling = read_json(store.noise_ceiling_path) if store.noise_ceiling_path.exists() else None
    e = cfg.estimate
    lines = [
        f"# Estimator study: `{run.family.full_name}`",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_estimator.py --run DIR --norms {shlex.quote(args.norms)}"
        f"{' --episodes ' + str(args.episodes) if args.episodes else ''} --executor {args.executor}` on the run "
        f"`policygradex run --family {run.family.name} --seed {cfg.seed} --estimate.score rollout` (defaults otherwise: meta-training {cfg.meta.ppo.total_steps:,} "
        f"env steps, {cfg.features.samples_per_task} samples per task, d = {cfg.features.d}, m = {len(subsets)} subsets of "
        f"{e.subset_size}, λ = {e.l2}, k = {cfg.k}, {cfg.method}). Machine for the variants: "
        f"{platform.processor() or platform.machine()}, 1 torch thread per process, torch {torch.__version__}."
        + (f" Conditions: {args.note}" if args.note else ""),
        "",
        f"Ground truth: θ* fine-tuned on each of the {truth['distinct_subsets']} distinct subsets "
        f"({truth['compute_seconds']:.0f} compute-seconds), true groups `{truth['groups']}`." if truth else
        "No ground truth in this run (yet): the columns against it are empty, and the table only says how well each "
        "rollout-free score reproduces the run's own rollout scores, and at what compute.",
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
        + "Spearman | within task | U corr. vs truth | vs rollout: Spearman | within task | no-signal tasks | compute (s) | speed-up vs truth |",
        "|---|---|---|---|---:|" + ("---:|" if run.family.planted_groups else "") + "---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['score']} | {r['norm']} | {r['affinity']} | `{r['groups']}` | {f(r['nmi'])} | "
            + (f"{f(r['planted'])} | " if run.family.planted_groups else "")
            + f"{f(r['spearman'])} | {f(r['within'])} | {f(r['u_corr'])} | {f(r['roll_spearman'])} | {f(r['roll_within'])} | "
            f"{r['flat'] or '–'} | {r['seconds']:.0f} | "
            + (f"{truth['compute_seconds'] / max(r['seconds'], 1e-9):.0f}× |" if truth else "– |")
        )
    lines += [
        "",
        "Spearman: estimated vs true f(S, i) over the distinct (subset, task) pairs; within task: each task's mean "
        "removed first (the affinity is made of these differences). U corr.: correlation of the upper triangles of "
        "the variant's affinity and the true (task z-scored) affinity. Vs rollout: the same Spearman (overall and "
        f"within task) against the run's own rollout scores ({cfg.estimate.episodes} episodes, ‖Δθ‖ = {base_norm:g}·‖θ*‖; "
        "how well a rollout-free score reproduces them). Compute: features + fits + scoring, summed "
        + (f"over processes; the ground truth took {truth['compute_seconds']:.0f} s (speed-up: its compute over the "
           "variant's)." if truth else "over processes."),
        "",
    ]
    out = args.out or Path(f"benchmarks/results/estimator_{run.family.name}.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))


# ---- the study over seeds --------------------------------------------------------------------------------
def over_seeds(args: argparse.Namespace) -> None:  # noqa: C901 (one table, read top to bottom)
    """Every variant of :func:`variant_rows` on each run DIR/seed_<s>/ (made first with ``--family`` and
    ``--seeds`` where missing), then per variant: the mean and 95% t interval over the seeds of its NMI to
    the truth (seeds with a ground truth), its NMI to the planted groups (planted families), its within-task
    Spearman to the truth and its affinity correlation; and its NMI paired by seed against the runs' own
    variant, rollout scores (the difference, its interval and the seeds won). Writes
    ``benchmarks/results/estimator_<family>-seeds.md``."""
    from policygradex import tasks
    from policygradex.analysis.stats import mean_ci, paired_comparison
    from policygradex.config import EstimateConfig, RunConfig

    root: Path = args.over_seeds
    if args.family:
        family = tasks.make(args.family)
        for s in range(args.seeds):
            # rollout scores (not the pipeline's default): every variant is compared with the run's own rollout scores
            pipeline.run(family, RunConfig(seed=s, executor=args.executor, workers=args.workers,
                                           estimate=EstimateConfig(score="rollout")), root / f"seed_{s}")
    dirs = sorted((d for d in root.glob("seed_*") if (d / "config.json").exists()), key=lambda d: int(d.name.split("_")[1]))
    if not dirs:
        raise SystemExit(f"error: no run folders {root}/seed_<s>/; make them with --family F --seeds N")
    ex = make_executor(args.executor, args.workers)
    per_seed: dict[int, dict[tuple[str, str, str], dict]] = {}
    ceilings: dict[int, float] = {}
    runs = {}
    for d in dirs:
        run = pipeline.reopen(d)
        runs[run.seed] = run
        per_seed[run.seed] = {(r["score"], r["norm"], r["affinity"]): r for r in variant_rows(run, args.norms, args.episodes, ex)}
        if run.store.noise_ceiling_path.exists():
            ceilings[run.seed] = float(read_json(run.store.noise_ceiling_path)["nmi"])
    seeds = sorted(per_seed)
    first = runs[seeds[0]]
    cfg = first.config
    own = (f"rollout ({cfg.estimate.episodes} ep.)", f"{cfg.estimate.relative_norm:g}", cfg.estimate.affinity)
    keys = [k for k in per_seed[seeds[0]] if all(k in per_seed[s] for s in seeds)]
    planted = first.family.planted_groups is not None
    truth_seeds = [s for s in seeds if per_seed[s][keys[0]]["nmi"] is not None]

    def stat(key, field: str, among: list[int]) -> str:  # type: ignore[no-untyped-def]
        v = [per_seed[s][key][field] for s in among]
        if not among or any(x is None for x in v):
            return "–"
        iv = mean_ci(v)
        return f"{iv.mean:.3f}" + (f" [{iv.low:.2f}, {iv.high:.2f}]" if len(v) > 1 else "")

    def paired(key, field: str, among: list[int]) -> str:  # type: ignore[no-untyped-def]
        if key == own or len(among) < 2:
            return "–"
        pc = paired_comparison([per_seed[s][key][field] for s in among], [per_seed[s][own][field] for s in among])
        return f"{pc.diff.mean:+.3f} [{pc.diff.low:+.2f}, {pc.diff.high:+.2f}], {pc.wins:.0%} won"

    target = "truth" if truth_seeds else "planted"
    among = truth_seeds if truth_seeds else seeds
    lines = [
        f"# Estimator study over seeds: `{first.family.full_name}`",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_estimator.py --over-seeds DIR"
        f"{f' --family {args.family} --seeds {args.seeds}' if args.family else ''} --norms {shlex.quote(args.norms)}"
        f"{' --episodes ' + str(args.episodes) if args.episodes else ''}{' --train ' + args.train if args.train else ''} "
        f"--executor {args.executor}`: every variant of the "
        f"single-run study (`bench_estimator.py --run`) on each of the runs DIR/seed_<s>/ (seeds {seeds}; the pipeline's "
        f"defaults except f(S, i) scored by rollouts: meta-training {cfg.meta.ppo.total_steps:,} env steps, d = {cfg.features.d}, λ = {cfg.estimate.l2}, "
        f"k = {cfg.k}, {cfg.method}), re-scored from each run's own θ*, features and fits. Machine: "
        f"{platform.processor() or platform.machine()}, 1 torch thread per process, torch {torch.__version__}."
        + (f" Conditions: {args.note}" if args.note else ""),
        "",
        f"Seeds with a ground truth: {truth_seeds or 'none'}"
        + (f"; noise ceiling (NMI of the truth to a second truth) {np.mean(list(ceilings.values())):.3f} on seeds {sorted(ceilings)}"
           if ceilings else "")
        + (f"; planted groups `{first.family.planted_groups}`." if planted else "."),
        "",
        f"Each cell: mean over seeds [95% t interval]. \"vs rollout\": the variant's NMI to the {target} minus that of "
        f"the runs' own scores (`{own[0]}`, ‖Δθ‖ = {own[1]}·‖θ*‖, `{own[2]}` affinity; the pipeline's default until "
        "the default became `surrogate` on this study's evidence), paired by seed.",
        "",
        "| score | ‖Δθ‖/‖θ*‖ | affinity | NMI vs truth | " + ("NMI vs planted | " if planted else "")
        + f"vs rollout (NMI vs {target}) | within-task Spearman vs truth | U corr. vs truth | no-signal tasks (task: seeds flagged) | compute (s) |",
        "|---|---|---|---:|" + ("---:|" if planted else "") + "---|---:|---:|---|---:|",
    ]
    for key in keys:
        counts: dict[int, int] = {}
        for s in seeds:
            for t in per_seed[s][key]["flat"] or []:
                counts[t] = counts.get(t, 0) + 1
        flat = ", ".join(f"{t}: {c}/{len(seeds)}" for t, c in sorted(counts.items())) or "–"
        secs = np.mean([per_seed[s][key]["seconds"] for s in seeds])
        name = f"**{key[0]}**" if key == own else key[0]
        lines.append(
            f"| {name} | {key[1]} | {key[2]} | {stat(key, 'nmi', truth_seeds)} | "
            + (f"{stat(key, 'planted', seeds)} | " if planted else "")
            + f"{paired(key, 'nmi' if truth_seeds else 'planted', among)} | {stat(key, 'within', truth_seeds)} | "
            f"{stat(key, 'u_corr', truth_seeds)} | {flat} | {secs:.0f} |")
    if args.train:
        lines += trained_variant_lines(runs, per_seed, own, args.train)
    lines += ["", "Per seed (NMI vs " + target + "):", "",
              "| score | ‖Δθ‖/‖θ*‖ | affinity | " + " | ".join(f"seed {s}" for s in among) + " |",
              "|---|---|---|" + "---:|" * len(among)]
    field = "nmi" if truth_seeds else "planted"
    for key in keys:
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(f"{per_seed[s][key][field]:.3f}" for s in among) + " |")
    lines.append("")
    out = args.out or Path(f"benchmarks/results/estimator_{first.family.name}-seeds.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))


def _variant_key(spec: str, keys: list[tuple[str, str, str]]) -> tuple[str, str, str]:
    try:
        score, norm, aff = spec.split(":")
    except ValueError:
        raise SystemExit(f"error: --train entry {spec!r} is not SCORE:NORM:AFFINITY (e.g. surrogate:0.05:task)") from None
    prefix = {"objective": "objective change"}.get(score, score) + " ("
    found = [k for k in keys if k[0].startswith(prefix) and k[1] == norm and k[2] == aff]
    if len(found) != 1:
        raise SystemExit(f"error: --train entry {spec!r} names no single variant of the study; "
                         f"its variants: {sorted({(k[0], k[1], k[2]) for k in keys})}")
    return found[0]


def variant_where(key: tuple[str, str, str]) -> str:
    """Where a variant's groups are trained: ``baselines/variant-<score>-<norm>-<affinity>``."""
    return "variant-" + "-".join(x.split(" (")[0].replace(" ", "_") for x in key)


def trained_variant_lines(runs: dict, per_seed: dict, reference: tuple[str, str, str], specs: str) -> list[str]:  # type: ignore[type-arg]
    """Train each named variant's groups per seed exactly as the pipeline trains its own (same budget
    rule, same group seeds; ``baselines/variant-<score>-<norm>-<affinity>/``; a variant whose partition
    is the pipeline's own reuses its policies), then each variant's mean return against the runs' own
    variant's (``reference``), paired by seed, beside gradient similarity and random grouping where compare-groupings
    ran (each seed's ``groupings.json``)."""
    from policygradex.analysis.stats import mean_ci, paired_comparison
    from policygradex.report import grouping_label

    seeds = sorted(runs)
    keys = list(per_seed[seeds[0]])
    chosen = [_variant_key(x, keys) for x in specs.split(",") if x]

    def canon(groups: list[list[int]]) -> list[list[int]]:
        return sorted(sorted(g) for g in groups)

    values: dict[tuple[str, str, str], list[float]] = {k: [] for k in [reference, *chosen]}
    same: dict[tuple[str, str, str], int] = {k: 0 for k in chosen}
    ref: dict[str, list[float]] = {}
    for s in seeds:
        run = runs[s]
        own = run.store.load_groups(run.family.n)
        parts: dict[str | None, list[list[int]]] = {None: own}
        for key in chosen:
            g = per_seed[s][key]["groups"]
            if canon(g) == canon(own):
                same[key] += 1
            else:
                parts[variant_where(key)] = g
        trained = pipeline.train_partitions(run, parts, "variants")
        mean_own = float(np.mean(list(trained[None].values())))
        values[reference].append(mean_own)
        for key in chosen:
            where = variant_where(key)
            values[key].append(float(np.mean(list(trained[where].values()))) if where in trained else mean_own)
        gj = run.store.groupings_file(run.config.groups.budget)
        if gj.exists():
            g = read_json(gj)
            for name in ("gradient-similarity", "tag", "ground-truth"):
                if name in g["partitions"]:
                    ref.setdefault(name, []).append(float(g["partitions"][name]["mean"]))
            ref.setdefault("random", []).append(float(g["random_mean"]))
    lines = ["", f"**Group policies trained from each variant's grouping** (mean return over the tasks, each task "
             f"scored with its group's policy; the pipeline's group training, budget rule `{runs[seeds[0]].config.groups.budget}`), "
             f"over seeds {seeds}, against the runs' own grouping (rollout scores), paired by seed:", "",
             "| grouping from | mean return [95% CI] | − the runs' own, paired [95% CI] | seeds won | seeds with the runs' own partition |",
             "|---|---:|---|---:|---:|"]
    for key in [reference, *chosen]:
        v = values[key]
        iv = mean_ci(v)
        name = " · ".join(key)
        if key == reference:
            lines.append(f"| **{name}** (the runs' own) | {iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}] | | | |")
            continue
        pc = paired_comparison(v, values[reference])
        lines.append(f"| {name} | {iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}] | {pc.diff.mean:+.1f} "
                     f"[{pc.diff.low:+.1f}, {pc.diff.high:+.1f}] | {pc.wins:.0%} | {same[key]}/{len(seeds)} |")
    for name, v in ref.items():
        if len(v) != len(seeds):
            continue
        iv = mean_ci(v)
        pc = paired_comparison(v, values[reference])
        lines.append(f"| {grouping_label(name)} (compare-groupings) | {iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}] | "
                     f"{pc.diff.mean:+.1f} [{pc.diff.low:+.1f}, {pc.diff.high:+.1f}] | {pc.wins:.0%} | |")
    baselines = [name for name, v in ref.items() if len(v) == len(seeds)]
    if baselines and len(seeds) > 1:
        # Where each variant's groups stand against each baseline grouping: the same seeds, paired.
        lines += ["", "Each variant's groups minus each baseline grouping, paired by seed (mean [95% CI], seeds won):", "",
                  "| grouping from | " + " | ".join(f"− {grouping_label(b)}" for b in baselines) + " |",
                  "|---|" + "---|" * len(baselines)]
        for key in [reference, *chosen]:
            cells = []
            for b in baselines:
                pc = paired_comparison(values[key], ref[b])
                cells.append(f"{pc.diff.mean:+.1f} [{pc.diff.low:+.1f}, {pc.diff.high:+.1f}], {pc.wins:.0%}")
            lines.append(f"| {' · '.join(key)} | " + " | ".join(cells) + " |")
    return lines


# ---- the projection study (issue 11) -------------------------------------------------------------------
def projection_variant(run: pipeline.Run, kind: str, draw: int) -> pipeline.Run:
    """DIR/studies/projection-<kind>[-p<draw>]/: the run's θ* and subsets, features under ``kind`` and their fits.

    Draw 0 is the projection the pipeline itself would build (its features stage); draw j > 0 changes only
    P's seed (the run's projection seed + j): the rollouts, and so the transitions, stay the same.
    """
    vdir = run.dir / "studies" / (f"projection-{kind}" + (f"-p{draw}" if draw else ""))
    if not (vdir / "config.json").exists():
        data = read_config(run.dir)
        data["features"] = {**data["features"], "projection": kind}
        if vdir.exists():
            shutil.rmtree(vdir)
        shutil.copytree(run.store.meta_dir, vdir / "meta")
        shutil.copy2(run.store.subsets_path, vdir / run.store.subsets_path.name)
        write_json(vdir / "config.json", data)  # last: marks the variant as set up
    v = pipeline.reopen(vdir)
    if draw == 0:
        pipeline.run_stage(v, "features")
    elif not v.store.features_done():
        ckpt = load_checkpoint(v.store.meta_checkpoint, v.family)
        fc, ppo = v.config.features, v.config.meta.ppo
        seed = pipeline.stage_seed(v.seed, "features")
        proj = make_projection(kind, ckpt.policy.actor, fc.d, seed + draw)  # type: ignore[arg-type]
        t = time.perf_counter()
        feats = collect_features(ckpt.policy, v.family, proj, fc.samples_per_task, seed + 1,
                                 envs_per_task=fc.envs_per_task, gamma=ppo.gamma, lam=ppo.gae_lambda)
        v.store.save_features({i: f.to_dict() for i, f in feats.items()},
                              {**projection_record(proj), "seconds": time.perf_counter() - t})
    if not v.store.fits_done():
        feats = v.store.load_features(v.family.n)
        t = time.perf_counter()
        weights = fit_subsets([feats[i]["grads"] for i in range(v.family.n)],
                              [feats[i]["advantages"] for i in range(v.family.n)], v.store.load_subsets(), v.config.estimate.l2)
        v.store.save_fits(weights, time.perf_counter() - t)
    return v


def projection_study(args: argparse.Namespace) -> None:  # noqa: C901 (one table, read top to bottom)
    from policygradex.analysis.agreement import score_agreement

    run = pipeline.reopen(args.run)
    store, cfg, n = run.store, run.config, run.family.n
    subsets = store.load_subsets()
    member = membership(subsets, n)
    truth = store.load_truth()
    truth_scores, _ = pipeline.load_scores(run, truth_seed=0)
    ex = make_executor(args.executor, args.workers)
    e = cfg.estimate
    own = store.load_features(n)
    kinds = [x for x in args.projections.split(",") if x]
    scores = [x for x in args.scores.split(",") if x]
    rows, checks = [], []
    for draw in range(args.projection_draws):
        for kind in kinds:
            v = projection_variant(run, kind, draw)
            feats = v.store.load_features(n)
            if kind == cfg.features.projection and draw == 0:
                diff = max(float((feats[i]["grads"] - own[i]["grads"]).abs().max()) for i in range(n))
                checks.append(f"the `{kind}` variant's features equal the run's own (max |difference| {diff:.1e})")
            grads = [feats[i]["grads"] for i in range(n)]
            adv = [feats[i]["advantages"] for i in range(n)]
            weights = v.store.load_weights()
            raw = from_record(v.store.load_projection()).lift(weights.float())
            ckpt = load_checkpoint(v.store.meta_checkpoint, v.family)
            theta_norm = float(flatten(ckpt.policy.actor_params()).norm())
            scaled = scale_deltas(raw, theta_norm, e.relative_norm)
            coef = scaled.norm(dim=1) / raw.norm(dim=1).clamp_min(1e-12)
            shared = {"features": float(v.store.load_projection()["seconds"]), "fits": v.store.fit_seconds()}
            approx = read_json(v.store.approx_error_json) if v.store.approx_error_json.exists() else studies.approx_error(v)
            err = {r["distance"]: r["first_order"] for r in approx["errors"]}
            for score in scores:
                start = time.perf_counter()
                if score == "rollout":
                    cache = v.dir / "estimate" / "study_rollout_scores.npz"  # kept: a rerun re-tabulates only
                    if cache.exists():
                        saved = np.load(cache)
                        table, seconds = saved["table"], float(saved["seconds"])
                    else:
                        table, seconds = _rollout_scores(v, subsets, scaled.numpy().astype(np.float32), e.episodes, ex)
                        np.savez(cache, table=table, seconds=seconds)
                elif score == "surrogate":
                    base = v.metric_of(v.store.load_meta_eval())
                    table = score_surrogate(weights, subsets, grads, adv, [base[i] for i in range(n)], coef)
                    seconds = time.perf_counter() - start
                elif score == "objective":
                    table = score_objective_change(weights, subsets, grads, adv, coef)
                    seconds = time.perf_counter() - start
                else:
                    raise SystemExit(f"--scores: unknown score mode {score!r}; use rollout, surrogate or objective")
                U, _ = affinity(table, member, e.affinity)
                groups = cluster(U, cfg.k, cfg.method, seed=run.seed).groups
                a, b, task = studies.distinct_pairs(run, table, truth_scores)
                corr = score_agreement(a, b, task)
                total = shared["features"] + shared["fits"] + seconds
                rows.append({
                    "projection": kind, "draw": draw, "score": score, "groups": groups,
                    "nmi": nmi(groups, truth["groups"], n),
                    "planted": nmi(groups, run.family.planted_groups, n) if run.family.planted_groups else None,
                    "spearman": corr["spearman"], "within": corr["spearman_within_task"],
                    "features": shared["features"], "fits": shared["fits"], "scoring": seconds, "total": total,
                    "speedup": truth["compute_seconds"] / total, "err1": err.get(0.01), "err5": err.get(0.05),
                })
                print(f"{kind} draw {draw} {score}: groups {groups}, NMI {rows[-1]['nmi']:.3f}", flush=True)

    def f(x, spec=".3f"):  # type: ignore[no-untyped-def]
        return "–" if x is None else format(x, spec)

    def mean_sd(values, spec=".3f"):  # type: ignore[no-untyped-def]
        vals = [x for x in values if x is not None]
        if not vals:
            return "–"
        if len(vals) == 1:
            return format(vals[0], spec)
        return f"{format(float(np.mean(vals)), spec)} ± {format(float(np.std(vals, ddof=1)), spec)}"

    planted = bool(run.family.planted_groups)
    draws = args.projection_draws
    lines = [
        f"# Projection study: `{run.family.full_name}` (issue 11)",
        "",
        f"Produced by `.venv/bin/python benchmarks/bench_estimator.py --run DIR --projections {args.projections} "
        f"--scores {args.scores} --projection-draws {draws} --executor {args.executor}` on the run `policygradex run "
        f"--family {run.family.name} --seed {cfg.seed}` (meta-training {cfg.meta.ppo.total_steps:,} env steps, "
        f"{cfg.features.samples_per_task} samples per task, d = {cfg.features.d}, m = {len(subsets)} subsets of "
        f"{e.subset_size}, λ = {e.l2}, ‖Δθ‖/‖θ*‖ = {e.relative_norm}, {e.episodes} episodes per rollout score, "
        f"`{e.affinity}` affinity, k = {cfg.k}, {cfg.method}). For each projection, {draws} draw(s) of P (draw 0: the "
        "pipeline's own projection seed; draw j: that seed + j), all on the same transitions of θ* (the same rollout "
        "seed): features, fits and scores recomputed in this one command on "
        f"{platform.processor() or platform.machine()}, 1 torch thread, torch {torch.__version__}."
        + (f" Conditions: {args.note}" if args.note else ""),
        "",
        f"Ground truth: θ* fine-tuned on each of the {truth['distinct_subsets']} distinct subsets "
        f"({truth['compute_seconds']:.0f} compute-seconds), true groups `{truth['groups']}`"
        + (f"; planted groups `{run.family.planted_groups}`" if planted else "") + ".",
        "",
        f"Mean ± standard deviation over the {draws} draw(s) of P:",
        "",
        "| projection | score | NMI vs truth | " + ("NMI vs planted | " if planted else "")
        + "Spearman | within task | first-order error at 1% / 5% | features (s) | estimate compute (s) | speed-up over the truth |",
        "|---|---|---:|" + ("---:|" if planted else "") + "---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        for score in scores:
            sel = [r for r in rows if r["projection"] == kind and r["score"] == score]
            lines.append(
                f"| {kind} | {score} | {mean_sd([r['nmi'] for r in sel])} | "
                + (f"{mean_sd([r['planted'] for r in sel])} | " if planted else "")
                + f"{mean_sd([r['spearman'] for r in sel])} | {mean_sd([r['within'] for r in sel])} | "
                f"{mean_sd([r['err1'] for r in sel], '.2%')} / {mean_sd([r['err5'] for r in sel], '.2%')} | "
                f"{mean_sd([r['features'] for r in sel], '.1f')} | {mean_sd([r['total'] for r in sel], '.1f')} | "
                f"{float(np.mean([r['speedup'] for r in sel])):.0f}× |"
            )
    lines += [
        "",
        "Every draw:",
        "",
        "| projection | draw | score | groups | NMI vs truth | " + ("NMI vs planted | " if planted else "")
        + "Spearman | within task | first-order error at 1% / 5% | features (s) | fits (s) | scoring (s) | "
        "estimate compute (s) | speed-up over the truth |",
        "|---|---:|---|---|---:|" + ("---:|" if planted else "") + "---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['projection']} | {r['draw']} | {r['score']} | `{r['groups']}` | {r['nmi']:.3f} | "
            + (f"{f(r['planted'])} | " if planted else "")
            + f"{f(r['spearman'])} | {f(r['within'])} | {f(r['err1'], '.2%')} / {f(r['err5'], '.2%')} | "
            f"{r['features']:.1f} | {r['fits']:.1f} | {r['scoring']:.1f} | {r['total']:.1f} | {r['speedup']:.0f}× |"
        )
    lines += [
        "",
        "Spearman: estimated vs true f(S, i) over the distinct (subset, task) pairs; within task: each task's mean "
        "removed first. First-order error: `approx-error` on the variant (relative error of log π_θ* + g̃ᵀw against "
        "log π at θ* + Δθ along the first 20 fitted directions Δθ = P·w, on held-out transitions). Features: rollouts of "
        "θ* plus the projected gradients of every task. Estimate compute: features + fits + scoring, summed over "
        "processes; speed-up: the ground truth's compute-seconds over that. The rollout scores cost the same work "
        "with either projection (the same rollouts of θ* + Δθ_S); differences in their seconds are the load of the "
        "shared machine.",
        "",
        *[f"Check: {c}." for c in checks],
        "",
    ]
    out = args.out or Path(f"benchmarks/results/studies_projection_{run.family.name}.md")
    write_text(out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
