"""Every Markdown text and figure the pipeline and the studies write: ``report.md`` and its
affinity heat-map (tasks ordered by group), and the approximation-error table and plot.

Writers take data and return text, or draw into a path the caller takes from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policygradex.config import ResolvedRun
from policygradex.io import atomic_path


def plot_affinity(path: Path, U: np.ndarray, groups: list[list[int]], names: list[str]) -> None:
    """Save a heat-map of ``U`` [n, n] with rows/columns ordered by group and group borders drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [i for g in groups for i in g]
    n = len(order)
    fig, ax = plt.subplots(figsize=(3.5 + 0.45 * n, 2.0 + 0.45 * n), layout="constrained")
    im = ax.imshow(U[np.ix_(order, order)], cmap="viridis")
    ax.set_xticks(range(n), [str(i) for i in order])
    ax.set_yticks(range(n), [f"{i} {names[i]}" for i in order], fontsize=8)
    edge = -0.5
    for g in groups[:-1]:
        edge += len(g)
        ax.axhline(edge, color="white", lw=2)
        ax.axvline(edge, color="white", lw=2)
    ax.set_title("task affinity U, ordered by group", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run_report(results: dict[str, Any], coverage: np.ndarray, config: ResolvedRun) -> str:
    """The text of ``report.md``: the groups, the affinity figure, θ* alone vs the group policies."""
    names = [t["name"] for t in results["tasks"]]
    metric = "success rate" if results["metric"] == "success" else "mean return"
    e, gc = config.estimate, config.groups
    off = coverage[~np.eye(len(coverage), dtype=bool)] if len(coverage) > 1 else np.array([0])
    lines = [
        f"# PolicyGradEx report: {results['family']}",
        "",
        f"k = {results['k']} groups by `{config.method}` clustering of the `{results['affinity_mode']}` affinity; "
        f"scores f(S, i) measured by **{results['score_mode']}** "
        f"({'rollouts of θ* + Δθ_S, ' + str(e.episodes) + ' episodes per task' if results['score_mode'] == 'rollout' else 'the rollout-free first-order estimate'}); "
        f"m = {results['num_subsets']} subsets of {e.subset_size} tasks (pairs covered {int(off.min())}–{int(off.max())} times); "
        f"d = {config.features.d}, {config.features.samples_per_task} samples per task; seed {config.seed}.",
        "",
        "## Groups",
        "",
    ]
    for g, members in enumerate(results["groups"]):
        lines.append(f"- group {g}: " + ", ".join(f"{i} ({names[i]})" for i in members))
    if results.get("planted_groups"):
        same = sorted(map(sorted, results["groups"])) == sorted(map(sorted, results["planted_groups"]))
        lines += ["", f"Planted groups: {results['planted_groups']} — {'recovered exactly' if same else 'NOT recovered'}."]
    flat = results.get("no_signal_tasks") or []
    if flat:
        lines += ["", f"**No signal**: the scores of task(s) {', '.join(f'{i} ({names[i]})' for i in flat)} are the same "
                  "in every subset, so their affinity rows carry no information and their group is arbitrary "
                  "(θ* fails or saturates them; see issue #12)."]
    lines += [
        "",
        "## Affinity",
        "",
        "![affinity](figures/affinity.png)",
        "",
        f"## Per-task {metric}: θ* alone vs the group policies",
        "",
        "| task | name | group | θ* alone | group policy | change |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for t in results["tasks"]:
        lines.append(
            f"| {t['index']} | {t['name']} | {t['group']} | {t['meta']:.2f} | {t['group_policy']:.2f} | "
            f"{t['group_policy'] - t['meta']:+.2f} |"
        )
    lines += [
        f"| **mean** | | | **{results['mean_meta']:.2f}** | **{results['mean_group_policy']:.2f}** | "
        f"{results['mean_group_policy'] - results['mean_meta']:+.2f} |",
        "",
        f"Group policies are fine-tuned from θ* (learning rate × {gc.lr_scale})"
        if gc.init == "meta"
        else "Group policies are trained from scratch",
    ]
    lines[-1] += (
        f" with {('the meta budget × group size / n' if gc.budget == 'proportional' else 'the meta budget / k') if gc.total_steps is None else str(gc.total_steps)} "
        f"env steps each; every task is evaluated with its group's policy over {gc.eval_episodes} episodes "
        "(deterministic actions).\n"
    )
    return "\n".join(lines)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
