"""The report as a reader sees it: ``policygradex run`` on a small family, then ``report.html`` rendered by
headless Chromium (issue 16). Writes ``benchmarks/results/report_<family>.png`` (the screenshot) and
``benchmarks/results/report_<family>.md`` (how it was made, and the report's summary in words).

    apt-get install -y chromium
    .venv/bin/python benchmarks/report_screenshot.py [--family cartpole-10] [--preset smoke] [--k 3] [--height 3300]

The run uses the command line, exactly as a user would; the screenshot shows the page from its top
(summary, groups, heat-map, per-task bars, training curves, budgets and timings below them).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from policygradex.io import write_text

RESULTS = Path(__file__).resolve().parent / "results"


def screenshot(page: Path, png: Path, width: int, height: int) -> str:
    """Render ``page`` with headless Chromium into ``png``; returns Chromium's version line."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed: apt-get install -y chromium")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri()],
                   check=True, capture_output=True, timeout=300)
    return subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="cartpole-10")
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--height", type=int, default=3300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pgx-report-")) / "run"
    cmd = [sys.executable, "-m", "policygradex.cli", "run", "--family", args.family, "--out", str(work),
           "--preset", args.preset, "--k", str(args.k), "--seed", str(args.seed), "--log-format", "plain"]
    log = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    png = RESULTS / f"report_{args.family}.png"
    version = screenshot(work / "report.html", png, 1000, args.height)
    summary = json.loads((work / "results.json").read_text())["summary"]
    lines = [
        f"# The report of a `{args.family}` run, rendered by headless Chromium",
        "",
        f"Produced by `benchmarks/report_screenshot.py --family {args.family} --preset {args.preset} --k {args.k} "
        f"--seed {args.seed}`: `policygradex run` (the command below), then `{version}` rendering "
        f"`report.html` offline at 1000×{args.height} px. Machine: {platform.machine()}, Python "
        f"{platform.python_version()}.",
        "",
        f"![report.html]({png.name})",
        "",
        "## Its summary in words (also in `report.md` and `results.json`)",
        "",
        *[f"- {s}" for s in summary],
        "",
        "## The command's log (stdout redirected to a file)",
        "",
        "```",
        " ".join(["policygradex", *cmd[3:]]).replace(str(work), "RUN"),
        log.replace(str(work), "RUN").rstrip(),
        "```",
        "",
    ]
    write_text(RESULTS / f"report_{args.family}.md", "\n".join(lines))
    print(f"wrote {png} and {png.with_suffix('.md')}")


if __name__ == "__main__":
    main()
