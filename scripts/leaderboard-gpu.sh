#!/usr/bin/env bash
# A leaderboard track on a lent GPU machine (no Ray, no sepbench installation there): scripts/leaderboard-gpu.sh OUTDIR
#
# Runs `bench run --grid $GRID --out $RUN_DIR --executor local --jobs $JOBS --data-dir $BENCH_DATA`, which resumes
# like any run, stops it with SIGTERM after $LIMIT seconds (finished cells are kept; a stopped cell restarts
# next time), and packs the run directory without its checkpoints into OUTDIR/run.tar.gz to bring back; unpack it
# into $RUN_DIR here and commit. Exit status: bench run's, or 124 when the limit stopped it.
#   GRID        the grid (default leaderboard-large)
#   RUN_DIR     the run directory (default reports/leaderboard/large)
#   BENCH_DATA  folder with the 4 MNIST IDX files (python -m sepbench.datasets.idx_export DIR)
#   JOBS        cells side by side (default 6: the built-ins take 1/8 to 1/4 of an H200 each)
#   LIMIT       seconds before the run is stopped (default 420, inside the device tool's 10 minutes per call)
#   PYTHON      the interpreter (default python3)
set -euo pipefail
out=${1:?usage: scripts/leaderboard-gpu.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# shellcheck source=scripts/checkout-package.sh
source "$(dirname "${BASH_SOURCE[0]}")/checkout-package.sh"
cd "$repo"
run_dir=${RUN_DIR:-reports/leaderboard/large}
status=0
timeout --signal=TERM --kill-after=60 "${LIMIT:-420}" "${PYTHON:-python3}" -m sepbench.cli run \
  --grid "${GRID:-leaderboard-large}" --out "$run_dir" --executor local --jobs "${JOBS:-6}" \
  ${BENCH_DATA:+--data-dir "$BENCH_DATA"} 2>&1 | tee "$out/log.txt" || status=${PIPESTATUS[0]}
tar -czf "$out/run.tar.gz" --exclude=checkpoints --exclude=.lock -C "$run_dir" .
echo "packed $(tar -tzf "$out/run.tar.gz" | grep -c '\.parquet$') finished cells into $out/run.tar.gz (exit $status)"
exit "$status"
