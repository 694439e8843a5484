#!/usr/bin/env bash
# The estimator study of one family in one command (issue 12): a run, two ground truths (seeds 0 and 1),
# the noise ceiling, then every estimator variant against them (benchmarks/bench_estimator.py).
#
#   benchmarks/estimator_study.sh FAMILY RUN_DIR ["conditions: what else ran on the machine"]
#
# Every step resumes: rerunning after a kill (or after a finished run) redoes only what is missing.
# Writes benchmarks/results/estimator_FAMILY.md.
# Optional environment: RUN_ARGS (extra `run` options, e.g. "--executor process --workers 2") and GT_ARGS
# (extra `ground-truth` options, e.g. "--total-steps 100000" where the family's default truth budget does
# not fit the machine: the table states the budget it was made with), NORMS (the extra step sizes re-scored,
# default 0.01,0.02,0.1; '' for none where rollouts are expensive).
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:?usage: benchmarks/estimator_study.sh FAMILY RUN_DIR [conditions]}
dir=${2:?usage: benchmarks/estimator_study.sh FAMILY RUN_DIR [conditions]}
note=${3:-}
bin=${VENV:-.venv}/bin
export OMP_NUM_THREADS=1
"$bin/policygradex" run --family "$family" --out "$dir" --seed 0 ${RUN_ARGS:-}
"$bin/policygradex" ground-truth --run "$dir" ${GT_ARGS:-}
"$bin/policygradex" ground-truth --run "$dir" --seed 1 ${GT_ARGS:-}
"$bin/policygradex" noise-ceiling --run "$dir"
"$bin/python" benchmarks/bench_estimator.py --run "$dir" --norms "${NORMS-0.01,0.02,0.1}" --executor serial \
  --out "benchmarks/results/estimator_${family}.md" \
  --note "made by \`benchmarks/estimator_study.sh $family DIR\` (run, ground-truth seeds 0 and 1, noise-ceiling, all on this machine; RUN_ARGS=\`${RUN_ARGS:-}\`, GT_ARGS=\`${GT_ARGS:-}\`, NORMS=\`${NORMS-0.01,0.02,0.1}\`); $note"
