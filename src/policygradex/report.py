"""``report.md`` and its figure: the affinity heat-map (tasks ordered by group), the groups, and a
per-task table of θ* alone against the group policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from policygradex.io import atomic_path, write_text


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


def write_report(directory: Path, results: dict[str, Any], U: np.ndarray, coverage: np.ndarray, config: dict[str, Any]) -> None:
    """Write ``figures/affinity.png`` and ``report.md`` into ``directory``."""
    names = [t["name"] for t in results["tasks"]]
    plot_affinity(directory / "figures" / "affinity.png", U, results["groups"], names)
    metric = "success rate" if results["metric"] == "success" else "mean return"
    e = config["estimate"]
    off = coverage[~np.eye(len(coverage), dtype=bool)] if len(coverage) > 1 else np.array([0])
    lines = [
        f"# PolicyGradEx report: {results['family']}",
        "",
        f"k = {results['k']} groups by `{config['method']}` clustering of the `{results['affinity_mode']}` affinity; "
        f"scores f(S, i) measured by **{results['score_mode']}** "
        f"({'rollouts of θ* + Δθ_S, ' + str(e['episodes']) + ' episodes per task' if results['score_mode'] == 'rollout' else 'the rollout-free first-order estimate'}); "
        f"m = {results['num_subsets']} subsets of {e['subset_size']} tasks (pairs covered {int(off.min())}–{int(off.max())} times); "
        f"d = {config['features']['d']}, {config['features']['samples_per_task']} samples per task; seed {config['seed']}.",
        "",
        "## Groups",
        "",
    ]
    for g, members in enumerate(results["groups"]):
        lines.append(f"- group {g}: " + ", ".join(f"{i} ({names[i]})" for i in members))
    if results.get("planted_groups"):
        same = sorted(map(sorted, results["groups"])) == sorted(map(sorted, results["planted_groups"]))
        lines += ["", f"Planted groups: {results['planted_groups']} — {'recovered exactly' if same else 'NOT recovered'}."]
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
        f"Group policies are fine-tuned from θ* (learning rate × {config['groups']['lr_scale']})"
        if config["groups"]["init"] == "meta"
        else "Group policies are trained from scratch",
    ]
    lines[-1] += (
        f" with {'the meta budget × group size / n' if config['groups']['total_steps'] is None else str(config['groups']['total_steps'])} "
        f"env steps each; every task is evaluated with its group's policy over {config['groups']['eval_episodes']} episodes "
        "(deterministic actions).\n"
    )
    write_text(directory / "report.md", "\n".join(lines))
