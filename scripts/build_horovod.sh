#!/usr/bin/env bash
# Install Horovod 0.28.1 (TensorFlow + Gloo, CPU only, no MPI) into a virtual
# environment, built from PyPI's sdist against the TensorFlow installed there.
#
# Usage: scripts/build_horovod.sh [VENV]      (or: VENV=path scripts/build_horovod.sh)
#   VENV defaults to the repository's .venv; a relative path is taken from the
#   current directory.
#
# The built wheel is cached under
#   ${KERAS_FASTRAIN_CACHE:-$HOME/.cache/keras-fastrain}/wheels/horovod-<ver>-tf<tf>-<pytag>/
# so a later run (same Horovod, same TensorFlow, same Python) only pip-installs
# it. A wheel built against another TensorFlow is never reused: the TF ABI changes
# between releases. The build itself takes ~10 minutes on 2 cores; it runs
# HOROVOD_BUILD_JOBS (default 2) compile jobs (Horovod's own default, -j8, can
# exhaust memory on small machines).
#
# Patches applied to the sdist (Horovod 0.28.1 predates TF >= 2.16's XLA layout):
#   horovod/tensorflow/xla_mpi_ops.cc: XLA headers moved out of TensorFlow's
#   include tree, so "tensorflow/compiler/xla/..." becomes "xla/...", and
#   "xla/client/xla_builder.h" becomes "xla/hlo/builder/xla_builder.h"
#   (the same fix as the unmerged upstream PR horovod/horovod#4302).
#   Nothing else needed patching to build against TF 2.21.0 (only deprecation
#   warnings, e.g. tsl::errors::Unknown).
# TF's wheel ships headers that include <farmhash.h> and highwayhash headers
# without shipping them; Debian's libfarmhash-dev / libhighwayhash-dev supply them.
set -euo pipefail

HOROVOD_VERSION=0.28.1

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_ARG=${1:-${VENV:-$REPO_ROOT/.venv}}
VENV=$(CDPATH='' cd -- "$VENV_ARG" 2>/dev/null && pwd) || { echo "error: no virtual environment at $VENV_ARG" >&2; exit 1; }
PY=$VENV/bin/python
[ -x "$PY" ] || { echo "error: $PY not found or not executable" >&2; exit 1; }

CACHE_ROOT=${KERAS_FASTRAIN_CACHE:-$HOME/.cache/keras-fastrain}
CONSTRAINTS=$REPO_ROOT/constraints.txt

log() { printf '==> %s\n' "$*" >&2; }

export TF_CPP_MIN_LOG_LEVEL=3   # keep TensorFlow quiet on the imports below

TF_VERSION=$("$PY" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null | tail -n1) || {
	echo "error: TensorFlow is not importable with $PY; install it first" >&2
	exit 1
}
PY_TAG=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
CACHE_KEY="horovod-${HOROVOD_VERSION}-tf${TF_VERSION}-${PY_TAG}"
WHEEL_DIR=$CACHE_ROOT/wheels/$CACHE_KEY
log "venv: $VENV (python $PY_TAG, tensorflow $TF_VERSION)"

# Installed already, at the right version and built against this TensorFlow?
# (horovod/metadata.json records the TF version it was compiled against.)
horovod_ok() {
	"$PY" - "$HOROVOD_VERSION" "$TF_VERSION" >/dev/null 2>&1 <<-'EOF'
		import json, os, sys
		import horovod, horovod.tensorflow
		assert horovod.__version__ == sys.argv[1], horovod.__version__
		meta = os.path.join(os.path.dirname(horovod.__file__), "metadata.json")
		if os.path.exists(meta):
		    with open(meta) as f:
		        built = json.load(f).get("tensorflow")
		    assert built in (None, sys.argv[2]), built
	EOF
}

tf_noise() { grep -v -e '^WARNING: All log messages before absl' -e '^I0000 ' || true; }

verify() {
	log "verifying"
	"$PY" -c 'import horovod.tensorflow as hvd; hvd.init(); print("hvd.size() =", hvd.size())' ||
		{ echo "error: import horovod.tensorflow / hvd.init() failed" >&2; exit 1; }
	# Note: --check-build also ticks PyTorch whenever torch is importable, although
	# no PyTorch extension is built (horovod.torch imports with just a warning).
	local check
	check=$("$VENV/bin/horovodrun" --check-build 2>&1 | tf_noise) || true
	echo "$check"
	grep -q '\[X\] TensorFlow' <<<"$check" || { echo "error: Horovod was built without TensorFlow" >&2; exit 1; }
	grep -q '\[X\] Gloo' <<<"$check" || { echo "error: Horovod was built without Gloo" >&2; exit 1; }
	log "Horovod $HOROVOD_VERSION OK in $VENV"
}

if horovod_ok; then
	log "horovod $HOROVOD_VERSION already installed (built for TF $TF_VERSION)"
	verify
	exit 0
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

pip_install() {
	if [ -f "$CONSTRAINTS" ]; then
		"$PY" -m pip install --quiet --constraint "$CONSTRAINTS" "$@"
	else
		"$PY" -m pip install --quiet "$@"
	fi
}

# Runtime requirements of Horovod (its setup.py also imports some of them).
log "installing Horovod's Python requirements"
pip_install cloudpickle psutil pyyaml packaging

shopt -s nullglob
cached=("$WHEEL_DIR"/horovod-"$HOROVOD_VERSION"-*.whl)
shopt -u nullglob

if [ ${#cached[@]} -eq 0 ]; then
	# Build dependencies: compilers and headers TF's include tree references.
	missing=()
	for pkg in libhighwayhash-dev libfarmhash-dev; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	command -v cmake >/dev/null || missing+=(cmake)
	command -v g++ >/dev/null || missing+=(g++)
	if [ ${#missing[@]} -gt 0 ]; then
		log "apt-get install ${missing[*]}"
		$SUDO apt-get update -qq
		$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	fi

	TMP=$(mktemp -d)
	trap 'rm -rf "$TMP"' EXIT

	log "downloading the horovod==$HOROVOD_VERSION sdist"
	"$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$HOROVOD_VERSION" -d "$TMP"
	tar -xzf "$TMP/horovod-$HOROVOD_VERSION.tar.gz" -C "$TMP"
	SRC=$TMP/horovod-$HOROVOD_VERSION

	log "patching horovod/tensorflow/xla_mpi_ops.cc for TF's XLA header layout"
	XLA_CC=$SRC/horovod/tensorflow/xla_mpi_ops.cc
	sed -i \
		-e 's#"tensorflow/compiler/xla/client/xla_builder\.h"#"xla/hlo/builder/xla_builder.h"#' \
		-e 's#"tensorflow/compiler/xla/#"xla/#g' \
		"$XLA_CC"
	if grep -q 'tensorflow/compiler/xla/' "$XLA_CC" ||
		! grep -q '#include "xla/hlo/builder/xla_builder.h"' "$XLA_CC"; then
		echo "error: patching $XLA_CC failed (sdist changed?)" >&2
		exit 1
	fi

	BUILD_LOG=$CACHE_ROOT/build-logs/$CACHE_KEY.log
	mkdir -p "$(dirname "$BUILD_LOG")"
	log "building the wheel (about 10 minutes on 2 cores); log: $BUILD_LOG"
	start=$SECONDS
	if ! (
		cd "$SRC"
		env HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
			HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=GLOO \
			MAKEFLAGS="-j${HOROVOD_BUILD_JOBS:-2}" \
			"$PY" -m pip wheel --no-build-isolation --no-deps --verbose -w "$TMP/dist" .
	) >"$BUILD_LOG" 2>&1; then
		tail -n 60 "$BUILD_LOG" >&2
		echo "error: building Horovod failed; full log: $BUILD_LOG" >&2
		exit 1
	fi
	log "built in $((SECONDS - start)) s"

	built=("$TMP"/dist/horovod-"$HOROVOD_VERSION"-*.whl)
	[ -f "${built[0]}" ] || { echo "error: no wheel produced" >&2; exit 1; }
	mkdir -p "$WHEEL_DIR"
	# Copy then rename, so a half-written wheel never appears in the cache.
	cp "${built[0]}" "$WHEEL_DIR/.tmp.$$"
	mv "$WHEEL_DIR/.tmp.$$" "$WHEEL_DIR/$(basename "${built[0]}")"
	cached=("$WHEEL_DIR/$(basename "${built[0]}")")
	log "cached ${cached[0]}"
else
	log "using cached wheel ${cached[0]}"
fi

pip_install --force-reinstall --no-deps "${cached[0]}"
horovod_ok || { echo "error: horovod $HOROVOD_VERSION not importable after install" >&2; exit 1; }
verify
