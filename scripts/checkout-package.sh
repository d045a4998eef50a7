# Sourced by the scripts that run on a machine without a sepbench installation (a lent GPU machine): imports
# `sepbench` from this checkout through a temporary package of symlinks (benchmark/ → sepbench, methods/ and
# datasets/ inside it, as setup.cfg maps them), removed when the script exits. Sets $repo and PYTHONPATH.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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
"${PYTHON:-python3}" -c "import sepbench, os, sys; p = os.path.realpath(sepbench.__file__); \
sys.exit(0 if p.startswith('$repo/') else 'sepbench comes from ' + p + ', not from $repo')"
