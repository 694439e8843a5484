"""Every Markdown/HTML text and figure the pipeline and the studies write: ``report.md`` and the
self-contained ``report.html`` (issue 16) with their figures — the affinity heat-map (tasks ordered by
group, named on both axes, groups outlined), θ* alone vs the group policies per task, the training
curves — and a summary in words; and the approximation-error table and plot.

The report is built once as a list of blocks (:func:`report_blocks`) and rendered to Markdown and to
HTML from the same blocks, so the two always say the same. Writers take data and return text, or draw
into a path the caller takes from the store."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policygradex.config import GROUP_SEED_KEY, STAGES, ResolvedRun, derive_seed, group_ppo, stage_seed
from policygradex.io import atomic_path


def format_seconds(seconds: float) -> str:
    """``42.1 s``, ``3 min 5 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def plot_affinity(path: Path, U: np.ndarray, groups: list[list[int]], names: list[str]) -> None:
    """Save a heat-map of ``U`` [n, n], rows and columns ordered by group and named on both axes, each
    group's block outlined."""
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    order = [i for g in groups for i in g]
    n = len(order)
    labels = [f"{i} {names[i]}" for i in order]
    fig, ax = plt.subplots(figsize=(4.5 + 0.45 * n, 3.5 + 0.45 * n), layout="constrained")
    im = ax.imshow(U[np.ix_(order, order)], cmap="viridis")
    ax.set_xticks(range(n), labels, fontsize=8, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels, fontsize=8)
    start = -0.5
    for g, members in enumerate(groups):
        ax.add_patch(Rectangle((start, start), len(members), len(members), fill=False, edgecolor="red", lw=2.5))
        ax.text(start + len(members) - 0.6, start + 0.1, f"g{g}", color="red", fontsize=9, ha="right", va="top",
                fontweight="bold")
        start += len(members)
    ax.set_title("task affinity U, ordered by group (groups outlined)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    _save(fig, path)


def plot_task_scores(path: Path, results: dict[str, Any]) -> None:
    """Save per-task bars of θ* alone beside its group's policy, tasks ordered by group."""
    plt = _pyplot()
    order = [i for g in results["groups"] for i in g]
    tasks = {t["index"]: t for t in results["tasks"]}
    n = len(order)
    x = np.arange(n)
    fig, ax = plt.subplots(figsize=(4 + 0.55 * n, 3.6), layout="constrained")
    ax.bar(x - 0.2, [tasks[i]["meta"] for i in order], 0.4, label="θ* alone", color="#9aa5b1")
    colors = plt.get_cmap("tab10")
    ax.bar(x + 0.2, [tasks[i]["group_policy"] for i in order], 0.4, label="its group's policy",
           color=[colors(tasks[i]["group"] % 10) for i in order])
    edge = -0.5
    for members in results["groups"][:-1]:
        edge += len(members)
        ax.axvline(edge, color="black", lw=0.8, ls=":")
    ax.set_xticks(x, [f"{i} {tasks[i]['name']}\n(g{tasks[i]['group']})" for i in order], fontsize=7, rotation=30,
                  ha="right", rotation_mode="anchor")
    ax.set_ylabel(_metric_name(results["metric"]))
    ax.set_title("per task: θ* alone vs its group's policy", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_curves(path: Path, curves: Mapping[str, Sequence[tuple[int, float]]], ylabel: str) -> None:
    """Save training curves: for each label, (env step of that training, value) points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=label, lw=2.0 if label == "θ*" else 1.2)
    ax.set_xlabel("env steps of that training (groups start from θ*)")
    ax.set_ylabel(ylabel)
    ax.set_title("training curves", fontsize=10)
    ax.legend(fontsize=8)
    _save(fig, path)


def curve_points(metrics: Sequence[Mapping[str, Any]], key: str = "train/episode_return") -> list[tuple[int, float]]:
    """(step, value) of ``key`` in the lines of a ``metrics.jsonl``."""
    return [(int(m["step"]), float(m[key])) for m in metrics if key in m and "step" in m]


# ---- the summary in words ----------------------------------------------------------------------------
def _metric_name(metric: str) -> str:
    return "success rate" if metric == "success" else "mean return"


def affinity_separation(U: np.ndarray, groups: list[list[int]]) -> dict[str, float] | None:
    """Mean of U over pairs in the same group and over pairs in different groups, and their gap in
    standard deviations of all off-diagonal entries; None when either kind of pair is missing."""
    n = len(U)
    label = np.empty(n, dtype=int)
    for g, members in enumerate(groups):
        label[members] = g
    same = label[:, None] == label[None, :]
    off = ~np.eye(n, dtype=bool)
    within, between = U[same & off], U[~same]
    if within.size == 0 or between.size == 0:
        return None
    std = float(U[off].std())
    gap = float(within.mean() - between.mean())
    return {"within": float(within.mean()), "between": float(between.mean()), "gap_std": gap / std if std > 0 else 0.0}


def explain(results: dict[str, Any], U: np.ndarray) -> list[str]:
    """The report's summary in words: which groups formed, which tasks gained or lost and by how much,
    weak groups, and how strongly the affinity separates the groups."""
    tasks = {t["index"]: t for t in results["tasks"]}
    groups, metric = results["groups"], _metric_name(results["metric"])

    def name(i: int) -> str:
        return f"{i} ({tasks[i]['name']})"

    scale = max(1e-9, max(abs(t["meta"]) for t in tasks.values()), max(abs(t["group_policy"]) for t in tasks.values()))
    tol = 0.02 * scale  # changes within 2% of the largest score are reported as unchanged
    out = [
        f"{len(tasks)} tasks formed {len(groups)} groups: "
        + "; ".join(f"group {g}: {', '.join(name(i) for i in members)}" for g, members in enumerate(groups)) + "."
    ]
    change = results["mean_group_policy"] - results["mean_meta"]
    out.append(f"Over all tasks the group policies {'raised' if change > tol else 'lowered' if change < -tol else 'kept'} "
               f"the {metric} from {results['mean_meta']:.2f} (θ* alone) to {results['mean_group_policy']:.2f} "
               f"({change:+.2f}).")
    delta = {i: t["group_policy"] - t["meta"] for i, t in tasks.items()}
    gained = sorted((i for i in delta if delta[i] > tol), key=lambda i: -delta[i])
    lost = sorted((i for i in delta if delta[i] < -tol), key=lambda i: delta[i])
    same = len(delta) - len(gained) - len(lost)
    parts = []
    if gained:
        parts.append(f"{len(gained)} task(s) gained: " + ", ".join(f"{name(i)} {delta[i]:+.2f}" for i in gained))
    if lost:
        parts.append(f"{len(lost)} lost: " + ", ".join(f"{name(i)} {delta[i]:+.2f}" for i in lost))
    if same:
        parts.append(f"{same} stayed within ±{tol:.2f} of θ*")
    out.append("; ".join(parts) + ".")
    weak = []
    for g, members in enumerate(groups):
        mine = float(np.mean([tasks[i]["group_policy"] for i in members]))
        before = float(np.mean([tasks[i]["meta"] for i in members]))
        if mine < before - tol:
            weak.append(f"group {g} ({', '.join(map(str, members))}) ended below θ* alone on its own tasks "
                        f"({mine:.2f} vs {before:.2f})")
        elif len(members) == 1 and mine < results["mean_meta"] - tol:
            weak.append(f"group {g} is task {name(members[0])} alone and reached {mine:.2f}, below θ*'s mean over "
                        f"all tasks ({results['mean_meta']:.2f})")
    out.append("Weak groups: " + "; ".join(weak) + "." if weak else "No group ended below θ* alone on its own tasks.")
    sep = affinity_separation(U, groups)
    if sep is None:
        out.append("The affinity cannot separate these groups: there are no pairs "
                   + ("within a group (every group is a single task)." if len(groups) == len(tasks) else "between groups."))
    else:
        strength = "clearly" if sep["gap_std"] >= 1 else "moderately" if sep["gap_std"] >= 0.3 else "barely"
        out.append(f"The affinity {strength} separates the groups: mean U within groups {sep['within']:.3f}, between "
                   f"groups {sep['between']:.3f} ({sep['gap_std']:+.2f} standard deviations of U).")
    flat = results.get("no_signal_tasks") or []
    if flat:
        out.append(f"Task(s) {', '.join(name(i) for i in flat)} had the same score in every subset: their affinity "
                   "carries no information and their group is arbitrary (θ* fails or saturates them).")
    if results.get("planted_groups"):
        ok = sorted(map(sorted, groups)) == sorted(map(sorted, results["planted_groups"]))
        out.append(f"The planted groups {results['planted_groups']} were {'recovered exactly' if ok else 'NOT recovered'}.")
    return out


# ---- the report as blocks, rendered to Markdown and HTML ---------------------------------------------
TIMINGS_HEADING = "Timings"
"""The report's last section: wall-clocks, which differ from run to run (everything before it is fixed by the seed)."""

@dataclass(frozen=True)
class Block:
    """One piece of the report: ``kind`` is "h1", "h2", "p", "ul", "table" or "img"; ``text`` is the
    heading, paragraph or image caption; ``items`` the list items or table rows (header first);
    ``image`` the figure's name (``figures/<name>.png``)."""

    kind: str
    text: str = ""
    items: tuple[tuple[str, ...], ...] = ()
    image: str = ""


def _projection_note(config: ResolvedRun) -> str:
    """`` (kronecker projection)`` for the structured projection; nothing for the paper's Gaussian one."""
    return " (kronecker projection)" if config.features.projection == "kronecker" else ""


def report_blocks(
    results: dict[str, Any], coverage: np.ndarray, config: ResolvedRun, timings: Mapping[str, Mapping[str, float]],
    figures: Sequence[str],
) -> list[Block]:
    """The content of ``report.md`` and ``report.html``: summary, groups, figures, the per-task table,
    budgets and seeds, and last the wall-clocks (``timings["training"]``: seconds of each policy's training;
    ``timings["stages"]``: of each stage), the only part a seed does not fix."""
    names = [t["name"] for t in results["tasks"]]
    metric = _metric_name(results["metric"])
    e, gc, meta = config.estimate, config.groups, config.meta.ppo
    off = coverage[~np.eye(len(coverage), dtype=bool)] if len(coverage) > 1 else np.array([0])
    scored = (f"rollouts of θ* + Δθ_S, {e.episodes} episodes per task" if results["score_mode"] == "rollout"
              else "the rollout-free first-order estimate")
    b = [
        Block("h1", f"PolicyGradEx report: {results['family']}"),
        Block("h2", "Summary"),
        Block("ul", items=tuple((s,) for s in results["summary"])),
        Block("p", f"k = {results['k']} groups by `{config.method}` clustering of the `{results['affinity_mode']}` "
                   f"affinity; scores f(S, i) measured by **{results['score_mode']}** ({scored}); m = "
                   f"{results['num_subsets']} subsets of {e.subset_size} tasks (pairs covered {int(off.min())}–"
                   f"{int(off.max())} times); d = {config.features.d}{_projection_note(config)}, "
                   f"{config.features.samples_per_task} samples per "
                   f"task; seed {config.seed}."),
        Block("h2", "Groups"),
        Block("ul", items=tuple((f"group {g}: " + ", ".join(f"{i} ({names[i]})" for i in members),)
                                for g, members in enumerate(results["groups"]))),
        Block("h2", "Affinity"),
        Block("img", "the task affinity U: tasks ordered by group, groups outlined", image="affinity"),
        Block("h2", f"Per-task {metric}: θ* alone vs the group policies"),
        Block("img", f"{metric} of every task under θ* alone and under its group's policy", image="tasks"),
    ]
    rows = [("task", "name", "group", "θ* alone", "group policy", "change")]
    rows += [(str(t["index"]), t["name"], str(t["group"]), f"{t['meta']:.2f}", f"{t['group_policy']:.2f}",
              f"{t['group_policy'] - t['meta']:+.2f}") for t in results["tasks"]]
    rows.append(("**mean**", "", "", f"**{results['mean_meta']:.2f}**", f"**{results['mean_group_policy']:.2f}**",
                 f"{results['mean_group_policy'] - results['mean_meta']:+.2f}"))
    b.append(Block("table", items=tuple(rows)))
    how = (f"Group policies are fine-tuned from θ* (learning rate × {gc.lr_scale})" if gc.init == "meta"
           else "Group policies are trained from scratch")
    rule = ("the meta budget × group size / n" if gc.budget == "proportional" else "the meta budget / k") \
        if gc.total_steps is None else str(gc.total_steps)
    b.append(Block("p", f"{how} with {rule} env steps each; every task is evaluated with its group's policy over "
                        f"{gc.eval_episodes} episodes (deterministic actions)."))
    if "curves" in figures:
        b += [Block("h2", "Training curves"),
              Block("img", "mean training-episode return of θ* and of each group policy (from metrics.jsonl)",
                    image="curves")]
    b.append(Block("h2", "Budgets and seeds"))
    budget = [("what", "budget", "seed")]
    m = results.get("meta_training") or {}
    budget.append(("θ* (meta-training, all tasks)", f"{meta.total_steps:,} env steps" if not m.get("imported")
                   else f"imported from {m['imported']}", str(stage_seed(config.seed, "meta"))))
    k = len(results["groups"])
    for g, members in enumerate(results["groups"]):
        budget.append((f"group {g} ({len(members)} task{'s' if len(members) > 1 else ''})",
                       f"{group_ppo(config, len(members), k).total_steps:,} env steps",
                       str(derive_seed(config.seed, GROUP_SEED_KEY, g))))
    budget.append(("features", f"{config.features.samples_per_task} transitions per task, d = {config.features.d}"
                   f"{_projection_note(config)}",
                   str(stage_seed(config.seed, "features"))))
    budget.append(("subsets and scores", f"m = {results['num_subsets']}, {e.episodes} episodes per (subset, task)",
                   f"{stage_seed(config.seed, 'subsets')}, {stage_seed(config.seed, 'estimate')}"))
    b.append(Block("table", items=tuple(budget)))
    b.append(Block("h2", TIMINGS_HEADING))
    b.append(Block("p", "Wall-clock of the last run of each stage and of each policy's training on this machine "
                        "(the only part of the report that a seed does not fix)."))
    stages = timings.get("stages", {})
    stage_rows = [("stage", "wall-clock")] + [(s, format_seconds(stages[s])) for s in STAGES if s in stages]
    if stages:
        stage_rows.append(("**total**", f"**{format_seconds(sum(stages[s] for s in STAGES if s in stages))}**"))
    b.append(Block("table", items=tuple(stage_rows)))
    training = timings.get("training", {})
    if training:
        b.append(Block("table", items=(("training", "wall-clock"),
                                       *((k, format_seconds(v)) for k, v in training.items()))))
    return b


def render_markdown(blocks: Sequence[Block]) -> str:
    """``report.md``; figures are linked as ``figures/<name>.png``."""
    out: list[str] = []
    for blk in blocks:
        if blk.kind == "h1":
            out += [f"# {blk.text}", ""]
        elif blk.kind == "h2":
            out += [f"## {blk.text}", ""]
        elif blk.kind == "p":
            out += [blk.text, ""]
        elif blk.kind == "ul":
            out += [f"- {item[0]}" for item in blk.items] + [""]
        elif blk.kind == "img":
            out += [f"![{blk.text}](figures/{blk.image}.png)", ""]
        elif blk.kind == "table":
            header, *rows = blk.items
            right = [all(_numeric(r[j]) for r in rows if r[j]) for j in range(len(header))]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
            out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return "\n".join(out)


def _numeric(cell: str) -> bool:
    return bool(re.fullmatch(r"\**[-+]?[\d.,]+( s)?\**", cell))


def _inline(text: str) -> str:
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:980px;margin:24px auto;padding:0 16px;
color:#1f2933;line-height:1.45}h1{font-size:1.6em;border-bottom:2px solid #d9e2ec;padding-bottom:6px}
h2{font-size:1.2em;margin-top:1.6em;color:#243b53}table{border-collapse:collapse;margin:10px 0;font-size:.92em}
th,td{border:1px solid #d9e2ec;padding:4px 10px}th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:12px 0}figure img{max-width:100%;border:1px solid #e4e7eb}figcaption{font-size:.85em;color:#627d98}
ul.summary li{margin:4px 0}code{background:#f0f4f8;padding:0 3px}"""


def render_html(blocks: Sequence[Block], figure_dir: Path) -> str:
    """``report.html``: one file that opens offline, its figures embedded as base64 PNG."""
    body: list[str] = []
    title = next((blk.text for blk in blocks if blk.kind == "h1"), "PolicyGradEx report")
    summary_next = False
    for blk in blocks:
        if blk.kind in ("h1", "h2"):
            body.append(f"<{blk.kind}>{_inline(blk.text)}</{blk.kind}>")
            summary_next = blk.text == "Summary"
            continue
        if blk.kind == "p":
            body.append(f"<p>{_inline(blk.text)}</p>")
        elif blk.kind == "ul":
            cls = ' class="summary"' if summary_next else ""
            body.append(f"<ul{cls}>" + "".join(f"<li>{_inline(i[0])}</li>" for i in blk.items) + "</ul>")
        elif blk.kind == "img":
            data = base64.b64encode((figure_dir / f"{blk.image}.png").read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(blk.text)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline(blk.text)}</figcaption></figure>")
        elif blk.kind == "table":
            header, *rows = blk.items
            body.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>" + "".join(
                "<tr>" + "".join(f'<td{" class=num" if _numeric(c) else ""}>{_inline(c)}</td>' for c in r) + "</tr>"
                for r in rows) + "</table>")
        summary_next = False
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


GROUPING_LABELS = {
    "estimated": "**PolicyGradEx** (estimated grouping)",
    "random": "random grouping (mean of the random partitions)",
    "gradient-similarity": "gradient-similarity grouping",
    "tag": "TAG grouping (lookahead affinity averaged over the meta-training; Fifty et al. 2021)",
    "one-group": "one policy for all tasks (k = 1), fine-tuned like the groups",
    "single-task": "one policy per task (k = n), fine-tuned like the groups",
    "ground-truth": "ground-truth grouping (clusters of fine-tuning every subset)",
    "theta*": "θ* alone (the multitask policy, no group training)",
}
"""How the comparison tables name each grouping (``random-<s>``: one random partition)."""


def grouping_label(name: str) -> str:
    """The table label of a grouping of ``compare-groupings`` or ``compare-seeds``."""
    if name.startswith("random-"):
        return f"random grouping (seed {name.removeprefix('random-')})"
    return GROUPING_LABELS.get(name, name)


def skipped_lines(skipped: dict[str, Any]) -> list[str]:
    """One Markdown line per grouping left out of a comparison, with why (a sentence, or one per seed)."""
    lines = []
    for name, why in skipped.items():
        if isinstance(why, dict):
            why = "; ".join(f"seed {s}: {w}" for s, w in why.items())
        lines.append(f"- **{name}** skipped: {why}")
    return lines


def groupings_table(result: dict[str, Any], family: str, metric: str) -> str:
    """The text of ``groupings.md`` from :func:`policygradex.studies.compare_groupings`'s result."""
    what = "success rate" if metric == "success" else "mean return"
    parts = result["partitions"]
    est = parts["estimated"]["mean"]
    rule = ("a group gets the meta budget × its size / n" if result["budget"] == "proportional"
            else "every group gets the meta budget / k")
    lines = [
        f"# Grouping comparison: {family}",
        "",
        f"k = {result['k']}. Every grouping's group policies are trained from θ* with the same total budget "
        f"(`{result['budget']}` rule: {rule}); each task is scored with its group's policy ({what}).",
        "",
        "| grouping | groups | mean over tasks | estimated − this |",
        "|---|---|---:|---:|",
        f"| {grouping_label('theta*')} | – | {result['meta_mean']:.2f} | {est - result['meta_mean']:+.2f} |",
    ]
    for name, r in parts.items():
        diff = "" if name == "estimated" else f"{est - r['mean']:+.2f}"
        lines.append(f"| {grouping_label(name)} | `{r['groups']}` | {r['mean']:.2f} | {diff} |")
    lines.append(f"| {grouping_label('random')} | – | {result['random_mean']:.2f} | {est - result['random_mean']:+.2f} |")
    skipped = skipped_lines(result.get("skipped") or {})
    if skipped:
        lines += ["", *skipped]
    return "\n".join(lines) + "\n"


def approx_error_table(result: dict[str, Any]) -> str:
    """The text of ``approx_error.md`` from :func:`policygradex.studies.approx_error`'s result."""
    name, table = result["family"], result["errors"]
    lines = [
        f"# First-order approximation error: {name}",
        "",
        f"Relative error ‖pred − true‖₁/‖true‖₁ of log π on held-out transitions of θ* ({result['samples_per_task']} per task), "
        f"mean over {result['tasks']} tasks × {result['directions']} surrogate directions Δθ_S = P·w_S rescaled to each distance.",
        "",
        "| ‖Δθ‖/‖θ*‖ | first order (mean) | first order (worst task) | zeroth order (mean) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [f"| {t['distance']:.1%} | {t['first_order']:.3%} | {t['first_order_worst_task']:.3%} | {t['zeroth_order']:.3%} |" for t in table]
    return "\n".join(lines) + "\n"


def plot_approx_error(path: Path, table: list[dict[str, float]], title: str) -> None:
    """Save the first- and zeroth-order error against the relative distance (log–log)."""
    plt = _pyplot()

    x = [100 * t["distance"] for t in table]
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    ax.plot(x, [100 * t["first_order"] for t in table], "o-", label="first order")
    ax.plot(x, [100 * t["zeroth_order"] for t in table], "s--", label="zeroth order")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("‖Δθ‖ / ‖θ*‖ (%)")
    ax.set_ylabel("relative error of log π (%)")
    ax.set_title(title, fontsize=10)
    ax.legend()
    _save(fig, path)


META_RL_LABELS = {
    "theta-star": "θ* + adaptation (multitask PPO, no MAML)",
    "one-group": "one MAML policy for all tasks (k = 1)",
    "random": "random grouping + MAML (mean of the random partitions)",
    "gradient-similarity": "gradient-similarity grouping + MAML",
    "estimated": "**PolicyGradEx** (estimated grouping) + MAML",
}
RULE_LABELS = {
    "adapt": "(a) adapt every group, keep the best",
    "estimate": "(b) the estimate's own answer",
    "fixed": "(c) one fixed group (the largest)",
    "oracle": "best group in hindsight (upper bound)",
}


def _ci(entry: dict[str, Any]) -> str:
    """``159.2 ± 3.1`` (mean ± half the 95% interval), or the mean alone for one seed."""
    if entry.get("ci95") is None:
        return f"{entry['mean']:.1f}"
    low, high = entry["ci95"]
    return f"{entry['mean']:.1f} ± {(high - low) / 2:.1f}"


def meta_rl_table(result: dict[str, Any], seconds: dict[str, float] | None = None) -> str:
    """The text of ``meta_rl.md`` from :func:`policygradex.meta_rl.meta_rl`'s result (and the summed
    compute seconds of its work items, shown last)."""
    seeds = len(result["seeds"])
    cfg = result["config"]
    maml = cfg["maml"]
    rule = RULE_LABELS[result["assign"]]
    lines = [
        f"# Meta-RL protocol: {result['family']} → {result['test_family']}",
        "",
        f"Mean return on the 50 held-out tasks after adaptation, mean ± half the 95% t interval over {seeds} seed(s) "
        f"(seeds {result['seeds']}: MAML training, random groupings, adaptation and evaluation; θ* and the estimated "
        f"grouping are the run's). k = {result['k']}. One adaptation step = one policy-gradient update on a fresh "
        f"rollout of {maml['rollout_steps']} steps × {maml['envs_per_task']} environments of the task (step size "
        f"{cfg['adapt_lr'] if cfg['adapt_lr'] is not None else maml['inner_lr']}). Held-out tasks are assigned a group by "
        f"rule {rule}. MAML: {'first' if maml['first_order'] else 'second'} order, {maml['inner_steps']} inner step(s) "
        f"at α = {maml['inner_lr']}, outer Adam lr {maml['outer_lr']} × {maml['outer_epochs']} epochs, "
        f"{result['maml_budget_per_partition']:,} env steps per partition (split by group size), from "
        f"{'θ*' if cfg['init'] == 'meta' else 'scratch'}; {cfg['eval_episodes']} evaluation episodes per task.",
        "",
    ]
    settings = result["settings"]
    header = " | ".join(f"{s} adaptation step{'s' if s != '1' else ''}" for s in settings)
    lines += [f"| method | {header} | paper |", "|---|" + "---:|" * len(settings) + "---:|"]
    for m in result["methods"]:
        cells = " | ".join(_ci(result["main"][s][m]) for s in settings)
        paper = result["main"][settings[0]][m]["paper"]
        lines.append(f"| {META_RL_LABELS.get(m, m)} | {cells} | {'–' if paper is None else paper} |")
    lines += [
        "",
        "The paper's numbers are returns after 200 adaptation steps with environment settings it does not give; its "
        "\"multi-task training\" row stands beside both θ* and the k = 1 MAML policy.",
        "",
        "## Which group serves a held-out task",
        "",
        "| grouping | rule | " + " | ".join(f"{s} step{'s' if s != '1' else ''}" for s in settings) + " |",
        "|---|---|" + "---:|" * len(settings),
    ]
    for m in result["grouped"]:
        for r in RULE_LABELS:
            cells = " | ".join(_ci(result["assignment"][s][m][r]) for s in settings)
            lines.append(f"| {META_RL_LABELS.get(m, m)} | {RULE_LABELS[r]} | {cells} |")
    agree = [result["per_seed"][str(s)]["estimated"]["adapt_estimate_agreement"] for s in result["seeds"]]
    lines += ["", f"Rules (a) and (b) pick the same group for {np.mean(agree):.0%} of the held-out tasks "
              "(estimated grouping, mean over seeds).", ""]
    first = str(result["seeds"][0])
    few = min(settings, key=int)
    lines += [
        f"## Generalisation measure (seed {first})",
        "",
        f"Tr H: Hutchinson's trace of the Hessian of each group policy's policy-gradient loss on a rollout of its "
        f"training tasks (mean ± standard error over {cfg['hessian_probes']} Rademacher probes). Returns after "
        f"{few} adaptation step(s): on the group's training tasks, on all 50 held-out tasks, and their gap.",
        "",
        "| grouping | group | tasks | Tr H | train return | held-out return | gap |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    order = [m for m in ("theta-star", "one-group", "estimated", "gradient-similarity") if m in result["per_seed"][first]]
    order += sorted(m for m in result["per_seed"][first] if m not in order)
    for m in order:
        for h in result["per_seed"][first][m]["hessian"]:
            se = "" if h["stderr"] != h["stderr"] else f" ± {h['stderr']:.3g}"
            lines.append(f"| {META_RL_LABELS.get(m, m)} | {h['group']} | `{h['tasks']}` | {h['trace']:.4g}{se} | "
                         f"{h['train_return']:.1f} | {h['test_return']:.1f} | {h['gap']:+.1f} |")
    if seconds:
        lines += ["", "## Timings", "", "Compute seconds summed over the group policies: "
                  + ", ".join(f"{k} {format_seconds(v)}" for k, v in sorted(seconds.items())) + "."]
    return "\n".join(lines) + "\n"
