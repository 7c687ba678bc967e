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
# same_params A B: every dataset of checkpoint A is bitwise equal in B.
same_params() { # same_params A B: every dataset bitwise equal
  "$PY" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
assert names, "no datasets"
for n in names:
    assert np.array_equal(a[n][()], b[n][()]), n
PY
}
# check_case NAME RC TEXT -- CMD...: one case of a table of refusals. Runs CMD under a
# timeout (CASE_TIMEOUT, default 60 s; a hang fails) with its output in out.txt and
# err.txt, adds "NAME | exit | secs | message" to table.txt (the name column CASE_WIDTH
# wide), and fails unless it exited RC, TEXT stands in one of CASE_TEXT_IN (default
# err.txt), at most one line of err.txt says "error", and the test's case_snapshot
# function (when it defines one: what must not change) prints the same before and after.
check_case() {
  local name=$1 want_rc=$2 want=$3; shift 4
  local before="" t0 rc secs msg lines in=(${CASE_TEXT_IN:-err.txt})
  declare -F case_snapshot >/dev/null && before=$(case_snapshot)
  t0=$(date +%s.%N)
  set +e; timeout -k 5 "${CASE_TIMEOUT:-60}" "$@" >out.txt 2>err.txt; rc=$?; set -e
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  msg=$(grep -v '^\s*$' err.txt | grep -v -- '^-\{5,\}' | head -1 || true)
  [[ -n $msg ]] || msg=$(head -1 out.txt)
  printf "%-${CASE_WIDTH:-40}s | %4s | %5s | %s\n" "$name" "$rc" "$secs" "$msg" >>table.txt
  [[ $rc -ne 124 && $rc -ne 137 ]] || fail "$name: hung (killed by timeout)"
  [[ $rc -eq $want_rc ]] || fail "$name: exit $rc, expected $want_rc: $(cat "${in[@]}")"
  grep -qF -- "$want" "${in[@]}" || fail "$name: message lacks '$want': $(cat "${in[@]}")"
  lines=$(grep -c "error" err.txt || true)
  [[ $lines -le 1 ]] || fail "$name: $lines error lines, expected one: $(cat err.txt)"
  if declare -F case_snapshot >/dev/null && [[ $(case_snapshot) != "$before" ]]; then
    fail "$name: a file that must not change changed: $(diff <(echo "$before") <(case_snapshot) || true)"
  fi
}
