#!/usr/bin/env bash
# ctest-labels: fuzz
# ctest-timeout: 900
# libFuzzer: builds the targets of tests/fuzz with clang (FFN_FUZZ=ON: libFuzzer,
# ASan, UBSan) in BUILD/fuzz, replays each seed corpus (tests/fuzz/corpus/<target>,
# which also holds the inputs of every crash found so far), then fuzzes each
# target for FFN_FUZZ_SECONDS (default 30). Any crash, sanitizer report, leak,
# timeout or failed property fails the test; the crashing input is kept in
# BUILD/fuzz/artifacts/. Prints executions, coverage and corpus size per target.
# Two kinds of finding are HDF5's own and reported as a NOTE (the target stops
# there): a crash, hang or memory error wholly inside libhdf5 (its code on its own buffers;
# see hdf5_internal_crash), and a leak of
# nothing but HDF5's internal free-list blocks (see hdf5_internal_leak).
# Skips (77) when clang or its libFuzzer runtime is missing.
#
# The mutations follow a fixed seed (FFN_FUZZ_SEED, default 1), so a run is a
# prefix of the same sequence on any machine and the suite passes or fails
# the same way in CI as here; FFN_FUZZ_SEED=0 draws a new seed (campaigns).
# Random campaigns can still find files on which HDF5 1.10 itself loops
# forever while opening them (tests/data/hdf5-loop): ffn's open watchdog
# (src/watchdog.h) turns those into an error, but the harness sees a timeout.
SRC=$(cd "$(dirname "$0")/.." && pwd)
source "$SRC/tests/lib/common.sh"
SECONDS_EACH=${FFN_FUZZ_SECONDS:-30}
FUZZ_SEED=${FFN_FUZZ_SEED:-1}
seed_arg=()
[[ $FUZZ_SEED == 0 ]] || seed_arg=(-seed="$FUZZ_SEED")
CC=${FFN_FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null; then
  echo "SKIP: $CC not found (apt-get install clang libclang-rt-14-dev, or launch/setup.sh --test-deps)"
  exit 77
fi
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' >probe.c
if ! "$CC" -fsanitize=fuzzer,address,undefined probe.c -o probe >probe.log 2>&1; then
  echo "SKIP: $CC cannot link libFuzzer with ASan/UBSan (apt-get install libclang-rt-14-dev): $(tail -1 probe.log)"
  exit 77
fi

FB=$BUILD/fuzz
# The targets' scratch files (HDF5 files made per input) on a RAM disk when there is one.
FFN_FUZZ_TMPDIR=$(mktemp -d /dev/shm/ffn-e2e-fuzz.XXXXXX 2>/dev/null || mktemp -d "$WORK/tmp.XXXXXX")
export FFN_FUZZ_TMPDIR
trap 'rm -rf "$WORK" "$FFN_FUZZ_TMPDIR"' EXIT
cmake -S "$SRC" -B "$FB" -DCMAKE_C_COMPILER="$CC" -DFFN_FUZZ=ON -DFFN_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log"; fail "configuring the fuzz build"; }
TARGETS=(fuzz_spec fuzz_config fuzz_dataset fuzz_checkpoint)
cmake --build "$FB" -j"$(nproc)" --target "${TARGETS[@]}" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "building the fuzz targets"; }
pass "built ${TARGETS[*]} with $CC (libFuzzer, ASan, UBSan)"

# Single allocations above 256 MiB fail (return NULL) instead of crashing, so a
# file that declares a huge model or dataset must end in a clean out-of-memory
# error; leaks are reported at exit.
export ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=256:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$FB/artifacts"
# Whether the crash in LOG happened inside libhdf5's own code: a fatal signal
# (abort, fortify or SEGV), or a timeout (HDF5 1.10 loops forever on some
# damaged files, see tests/data/hdf5-loop; ffn's open watchdog ends those in
# production, after FFN_OPEN_TIMEOUT), whose innermost frame outside the C library and the
# sanitizer/fuzzer runtime is libhdf5, before any frame of ffn's sources. An
# AddressSanitizer memory report (overflow, use after free) counts as HDF5's only when both the
# access and every block it names (allocated, freed) are HDF5's own: a buffer that ffn
# allocated, or an access from ffn's code to a buffer HDF5 handed over, is ffn's.
RUNTIME_FRAMES='libc\.so|fuzzer::|__sanitizer|libclang_rt|compiler-rt|nptl/|stdlib/|signal/|libio/|debug/|csu/|__interceptor|sanitizer_common| in (malloc|calloc|realloc|free|memcpy|memmove|memset)( |$)'
# innermost_frames LOG: the innermost frame outside the runtime of each stack in LOG, one a line.
innermost_frames() {
  awk -v rt="$RUNTIME_FRAMES" '/^ *#[0-9]+ / { if (!done && $0 !~ rt) { print; done = 1 }; next } { done = 0 }' "$1"
}
hdf5_internal_crash() {
  local first
  if grep -qE 'AddressSanitizer: (heap|stack|global|dynamic-stack)-buffer-overflow|use-after|double-free' "$1"; then
    ! innermost_frames "$1" | grep -qv libhdf5
    return
  fi
  grep -qE 'deadly signal|SEGV on unknown address|libFuzzer: timeout' "$1" || return 1
  first=$(grep -E '^ *#[0-9]+ ' "$1" | grep -vE "$RUNTIME_FRAMES" | head -1)
  [[ $first == *libhdf5* ]]
}
# Whether the leak report in LOG is HDF5 losing its own structures on a damaged file: INPUT is
# run again with full malloc stacks (the fuzzing run's are two frames deep), and every leaked
# block must come from HDF5's free lists (H5FL_: object headers and cache entries, never handed
# to the caller; HDF5 1.10 drops some when it fails to load a damaged object header). A block
# ffn allocated, or HDF5 data handed to ffn (variable-length strings come from the vlen
# allocator, not H5FL), still fails; so does any other sanitizer report.
hdf5_internal_leak() {
  local target=$1 log=$2 input=$3
  grep -q 'LeakSanitizer: detected memory leaks' "$log" || return 1
  grep -qE 'AddressSanitizer: [a-z-]+ on|UndefinedBehaviorSanitizer|deadly signal|libFuzzer: timeout' "$log" && return 1
  [[ -f $input ]] || return 1
  ASAN_OPTIONS=$ASAN_OPTIONS:fast_unwind_on_malloc=0 timeout -k 10 300 "$FB/tests/fuzz/$target" "$input" >"$log.full" 2>&1
  grep -q 'LeakSanitizer: detected memory leaks' "$log.full" || return 1
  awk '/^(Direct|Indirect) leak of/ { if (inblock && !h5fl) bad = 1; inblock = 1; h5fl = 0; next }
       inblock && /H5FL_/ { h5fl = 1 }
       /^SUMMARY:/ { if (inblock && !h5fl) bad = 1; inblock = 0 }
       END { exit bad }' "$log.full"
}
printf '%-16s | %9s | %7s | %5s | %6s | %s\n' target execs exec/s cov ft corpus >table.txt
for t in "${TARGETS[@]}"; do
  seeds=$SRC/tests/fuzz/corpus/$t
  mkdir -p "corpus-$t"
  dict=()
  case $t in
    fuzz_spec | fuzz_checkpoint) dict=(-dict="$SRC/tests/fuzz/spec.dict") ;;
    fuzz_config) dict=(-dict="$SRC/tests/fuzz/config.dict") ;;
  esac
  set +e
  timeout -k 10 $((SECONDS_EACH + 300)) "$FB/tests/fuzz/$t" "${seed_arg[@]}" -max_total_time="$SECONDS_EACH" -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$FB/artifacts/$t-" "${dict[@]}" \
    "corpus-$t" "$seeds" >"$t.log" 2>&1
  rc=$?
  set -e
  if [[ $rc -ne 0 ]]; then
    input=$(ls -t "$FB/artifacts/$t-"* 2>/dev/null | head -1)
    if hdf5_internal_crash "$t.log"; then
      # HDF5's own parser crashed on a file it was handed (the trust model:
      # ffn cannot make HDF5 safe, and any HDF5 reader dies on that file too).
      # Reported and kept, not counted as ffn's failure; the target stops there.
      echo "NOTE: $t: a crash or hang inside libhdf5 itself ($(grep -m1 -oE 'in H5[A-Za-z_]+' "$t.log" || echo 'HDF5')), not in ffn; input kept as $input" >&2
      printf '%-16s | %9s | %7s | %5s | %6s | %s\n' "$t" "-" "-" "-" "-" "stopped at an HDF5-internal crash/hang" >>table.txt
      continue
    fi
    if hdf5_internal_leak "$t" "$t.log" "$input"; then
      echo "NOTE: $t: HDF5 lost its own structures (H5FL_ blocks) on a damaged file, not ffn's memory; input kept as $input" >&2
      grep -m3 -E 'in H5[A-Za-z_]+ ' "$t.log.full" >&2 || true
      printf '%-16s | %9s | %7s | %5s | %6s | %s\n' "$t" "-" "-" "-" "-" "stopped at an HDF5-internal leak" >>table.txt
      continue
    fi
    tail -60 "$t.log" >&2
    fail "$t: exit $rc; input kept as $input"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$t.log")
  last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$t.log" | tail -1 || true)
  cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
  ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$last")
  corp=$(sed -E 's/.*corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/' <<<"$last")
  [[ -n $execs && $execs -gt 0 ]] || fail "$t: no executions reported"
  printf '%-16s | %9s | %7s | %5s | %6s | %s\n' "$t" "$execs" "$rate" "$cov" "$ft" "$corp" >>table.txt
done
cat table.txt
pass "libFuzzer: ${#TARGETS[@]} targets, $SECONDS_EACH s each, no crash"
