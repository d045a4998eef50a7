#!/usr/bin/env bash
# The whole GPU check as one command: scripts/gpu-check.sh OUTDIR
#
# Writes OUTDIR/summary.md and the raw numbers (results.json, *.csv, cuda-tests.xml, log.txt); under 9 minutes
# on one H200. Without CUDA it runs its CPU part (tiny sizes) and the summary names every GPU item it skipped.
# Needs python with torch, pandas, pyarrow, scikit-image, scikit-learn, click, pyyaml, pytest; not Ray, not pip
# install: sepbench is imported from this checkout through a temporary package of symlinks.
#   BENCH_DATA   folder with the 4 MNIST IDX files (write them with: python -m sepbench.datasets.idx_export DIR)
#   PYTHON       the interpreter (default python3)
#   GPU_CHECK_METHODS, GPU_CHECK_ARGS   e.g. GPU_CHECK_METHODS=fcsae, GPU_CHECK_ARGS="--budget 300"
set -euo pipefail
out=${1:?usage: scripts/gpu-check.sh OUTDIR}
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# shellcheck source=scripts/checkout-package.sh
source "$(dirname "${BASH_SOURCE[0]}")/checkout-package.sh"
cd "$repo"
# shellcheck disable=SC2086
"$python" -m sepbench.perf.gpu_check "$out" ${GPU_CHECK_ARGS:-} 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
