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
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)

pkg=$(mktemp -d "${TMPDIR:-/tmp}/sepbench-pkg.XXXXXX")
trap 'rm -rf "$pkg"' EXIT
mkdir "$pkg/sepbench"
for entry in "$repo"/benchmark/*; do
  ln -s "$entry" "$pkg/sepbench/$(basename "$entry")"
done
ln -s "$repo/methods" "$pkg/sepbench/methods"
ln -s "$repo/datasets" "$pkg/sepbench/datasets"
export PYTHONPATH="$pkg:$repo${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

cd "$repo"
"$python" -c "import sepbench, os, sys; p = os.path.realpath(sepbench.__file__); \
sys.exit(0 if p.startswith('$repo/') else 'sepbench comes from ' + p + ', not from $repo')"
# shellcheck disable=SC2086
"$python" -m sepbench.perf.gpu_check "$out" ${GPU_CHECK_ARGS:-} 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
