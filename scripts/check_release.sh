#!/usr/bin/env bash
# Proves that the release installs and works as `pip install keras-fastrain[...]`
# will: builds the sdist and wheel, runs `twine check --strict`, then for each
# set of extras installs the wheel into a fresh virtual environment, checks
# that `import keras_fastrain` comes from there (not this checkout) and runs a
# short demo (2 epochs on 6,000 images) from it. Horovod is left out: it does
# not build from PyPI against today's TensorFlow (scripts/build_horovod.sh).
#
#   scripts/check_release.sh            # all extras, about 5 minutes
#   scripts/check_release.sh jax,demo   # only these extras
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

echo "== Building and checking the sdist and wheel"
rm -rf dist
.venv/bin/python -m build --outdir dist . >/dev/null
.venv/bin/twine check --strict dist/*
ls -l dist
wheel="$root/$(ls dist/*.whl)"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
extras_list=("$@")
[ ${#extras_list[@]} -gt 0 ] || extras_list=("tensorflow,demo" "jax,tuner,demo" "torch,demo" "all")
for extras in "${extras_list[@]}"; do
  case "$extras" in
    *tensorflow*|all) backend=tensorflow ;;
    *jax*) backend=jax ;;
    *torch*) backend=torch ;;
    *) echo "no backend among extras $extras" >&2; exit 2 ;;
  esac
  echo "== keras-fastrain[$extras] in a fresh virtual environment, demo on $backend"
  venv="$scratch/venv-${extras//,/-}"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --constraint "$root/constraints.txt" \
    "${wheel}[$extras]" $([ "$backend" = torch ] && echo "torch==2.13.0")
  (
    cd "$scratch"  # so that `import keras_fastrain` finds the wheel, not the checkout
    KERAS_BACKEND=$backend "$venv/bin/python" -c '
import keras_fastrain
assert "site-packages" in keras_fastrain.__file__, keras_fastrain.__file__
print("keras-fastrain", keras_fastrain.__version__, "from", keras_fastrain.__file__)'
    if [[ "$extras" == *tuner* || "$extras" == all ]]; then
      KERAS_BACKEND=$backend "$venv/bin/python" -c 'import keras_fastrain.tuner'
    fi
    KERAS_BACKEND=$backend "$venv/bin/keras-fastrain" demo --subset 6000 --epochs 2 \
      --target 0.5 --out-dir "$scratch/demo-${extras//,/-}"
    test -s "$scratch/demo-${extras//,/-}/demo.json"
    test -s "$scratch/demo-${extras//,/-}/demo.png"
  )
done
echo "== The release installs and runs with every extra"
