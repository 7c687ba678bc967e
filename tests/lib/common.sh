# Shared helpers for the end-to-end tests (sourced). $1 of each test is the build dir.
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
FFN_TRAIN=$BUILD/ffn-train
FFN_DATA=$BUILD/ffn-data
FFN_EVAL=$BUILD/ffn-eval
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Loopback-only transports keep the tests off the network; oversubscribe lets 4 ranks share 2 cores.
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=lo
export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_rmaps_base_mapping_policy=slot
MPIRUN=${FFN_MPIEXEC:-mpirun}
WORK=$(mktemp -d /tmp/ffn-e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# A command failing under set -e says which, instead of ending the test silently.
trap 'rc=$?; [[ $- == *e* ]] && echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited with status $rc" >&2' ERR
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }
# mpi NP CMD...: runs under mpirun with a hard timeout so a hang fails the test.
mpi() { local np=$1; shift; timeout -k 5 "${MPI_TIMEOUT:-240}" "$MPIRUN" -np "$np" "$@"; }
# The value after KEY in the last line matching PATTERN of FILE.
field() { grep -E "$2" "$1" | tail -1 | sed -E "s/.*$3 ([-0-9.e+naif]+).*/\1/"; }
# ge A B: A >= B as floats.
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
