#!/usr/bin/env bash
# Installs the Debian packages ffn needs (only those missing), then configures
# and builds into build/ (or $FFN_BUILD_DIR). Safe to run again: it only does
# what is not done yet. --test-deps also installs what the test suite uses
# beyond the build (Slurm and munge, iproute2, valgrind, clang for fuzzing,
# python3-torch and python3-onnx for the PyTorch/ONNX interop tests, gnuplot-nox
# for launch/plot.sh and its test, python3-sklearn for datasets/tabular.sh and
# e2e_defaults).
# Other arguments go to cmake's configure step, e.g. -DFFN_SANITIZE=ON.
#   usage: launch/setup.sh [--test-deps] [CMAKE-ARGS...]
# Environment: FFN_BUILD_DIR (build), FFN_BUILD_TYPE (Release for a new build directory; an
# existing one keeps its type unless FFN_BUILD_TYPE names another, which the script says).
set -euo pipefail
case ${1:-} in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
esac
cd "$(dirname "$(readlink -f "$0")")/.."
test_deps=0
if [[ ${1:-} == --test-deps ]]; then test_deps=1; shift; fi

packages=(
  build-essential cmake pkg-config   # compiler and build
  libopenmpi-dev openmpi-bin         # MPI: the data-parallel runtime
  libopenblas-dev                    # sgemm for the dense layers
  libhdf5-dev hdf5-tools             # datasets and checkpoints (h5dump for inspection)
  zlib1g-dev                         # gzip'd IDX files, CRC32 replica hashes
  libcjson-dev                       # JSON metrics and the config saved in checkpoints
  libcsv-dev                         # ffn-data csv: RFC 4180 quoting (quoted commas, quotes, newlines)
  libzip-dev                         # ffn-data npz: .npz members read as streams (stored or deflated)
  libdnnl-dev                        # oneDNN: --precision bf16 on the CPU's bf16 instructions (optional at build)
  dataset-fashion-mnist              # the default real dataset
  python3-h5py python3-numpy         # tests cross-check files with h5py
)
if ((test_deps)); then
  packages+=(
    slurm-wlm munge                  # the batch-job test runs a real single-node Slurm
    iproute2                         # the two-"node" test joins network namespaces
    valgrind                         # memcheck run of a short training
    clang libclang-rt-14-dev         # libFuzzer targets and sanitizers
    python3-torch python3-onnx       # the PyTorch/ONNX interop tests (e2e_interop_torch, e2e_onnx) run instead of skipping
    gnuplot-nox                      # launch/plot.sh draws the curves; e2e_plot checks its PNGs instead of skipping
    python3-sklearn                  # datasets/tabular.sh's bundled datasets and the peer in e2e_defaults (and launch/defaults-study.sh)
  )
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build=${FFN_BUILD_DIR:-build}
cached=""
[[ -f $build/CMakeCache.txt ]] && cached=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
type=${FFN_BUILD_TYPE:-${cached:-Release}}
if [[ -n $cached && $cached != "$type" ]]; then
  echo "setup: switching $build/ from a $cached build to $type (FFN_BUILD_TYPE)"
elif [[ -n $cached && -z ${FFN_BUILD_TYPE:-} ]]; then
  echo "setup: $build/ is a $cached build and stays one (FFN_BUILD_TYPE=Release to switch)"
fi
cmake -S . -B "$build" "-DCMAKE_BUILD_TYPE=$type" "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
echo "setup: built into $build/"
