#!/usr/bin/env bash
# ctest-labels: slow
# (skipped in the sanitizer pass of .ci/run: its time is benchmark loops over the kernels that
# the unit tests check under ASan)
# ffn-bench cannot rot: its quick suite prints every table row with finite
# numbers, and the two-rank step measure prints the gradient exchange figures.
# (Timings are not checked: the benchmark proper is launch/bench.sh, not a test.)
source "$(dirname "$0")/lib/common.sh"
BENCH=$BUILD/ffn-bench
[[ -x $BENCH ]] || { echo "skip: $BENCH not built"; exit 77; }

# Every cell of a row that should hold a number is a finite number (ratios may be "-").
check_row() {
  local name=$1 line
  line=$(grep -F "| $name" out.txt | head -1) || fail "ffn-bench --quick printed no row '$name'"
  awk -F'|' -v row="$name" '{
    for (i = 3; i < NF; i++) {
      v = $i; gsub(/ /, "", v)
      if (v == "-") continue
      if (v !~ /^-?[0-9]+(\.[0-9]+)?$/) { print "FAIL: row " row ": cell " i - 2 " is \"" v "\"" > "/dev/stderr"; exit 1 }
    }
  }' <<<"$line" || exit 1
}

# finite_keys WHAT MIN LINE KEY...: each KEY=value of a RESULT line is a finite number above MIN.
finite_keys() {
  local what=$1 min=$2 line=$3 key v; shift 3
  for key in "$@"; do
    v=$(sed -n "s/.* $key=\([^ ]*\).*/\1/p" <<<"$line")
    awk -v v="$v" -v min="$min" 'BEGIN { exit !(v == v + 0 && v > min && v < 1e300) }' || fail "$what $key is '$v'"
  done
}

timeout -k 5 240 "$BENCH" --quick --dir "$WORK" >out.txt 2>err.txt || { cat out.txt err.txt; fail "ffn-bench --quick exited with an error"; }
grep -q "OpenBLAS" out.txt || fail "the header does not name the OpenBLAS kernel"
for row in "mlp-b32 step" "mlp-b32 GFLOP/s" "mlp-b256 step" "mlp-b256 GFLOP/s" "ffn-b256 step" \
           "ffn-b256 GFLOP/s" "checkpoint write" "peak RSS"; do
  check_row "$row"
done
pass "ffn-bench --quick prints every row with finite numbers"

mpi 2 "$BENCH" step --model dense:128:relu,dense:10 --input 784 --batch 32 --seconds 0.2 >step2.txt 2>&1 ||
  { cat step2.txt; fail "ffn-bench step on 2 ranks failed"; }
line=$(grep '^RESULT step' step2.txt) || fail "no RESULT line from the 2-rank step"
finite_keys "2-rank" -1e300 "$line" samples_per_s gflops sgemm_gflops exchange_ms bare_allreduce_ms exchange_vs_bare
finite_keys "2-rank" 0 "$line" ring_traffic_ms
pass "ffn-bench step on 2 ranks reports the exchange against a bare allreduce and the ring's traffic alone"

# bf16, where this build and CPU run it: the step and its bound on oneDNN's bf16 matmul.
if "$BUILD/ffn-bench" step --model dense:64:relu,dense:10 --input 784 --batch 32 --seconds 0.2 --precision bf16 >bf.txt 2>&1; then
  line=$(grep '^RESULT step' bf.txt) || fail "no RESULT line from the bf16 step"
  grep -q ' precision=bf16 gemm=bf16_operands' <<<"$line" || fail "bf16 step did not run on the bf16 engine: $line"
  finite_keys "bf16" 0 "$line" samples_per_s gflops sgemm_gflops of_bound update_ms
  pass "ffn-bench step --precision bf16 reports the step against the bf16 matmul bound"
else
  grep -q "precision bf16" bf.txt || fail "ffn-bench step --precision bf16 failed: $(cat bf.txt)"
  echo "note: bf16 not available here: $(cat bf.txt)"
fi

# memory: an optimizer update's bandwidth on every rank at once (the floor of
# 26 bytes a parameter, and Adam as ffn runs it), finite on 1 and 2 ranks.
for np in 1 2; do
  mpi $np "$BENCH" memory --params 200000 --seconds 0.1 >mem.txt 2>&1 || { cat mem.txt; fail "ffn-bench memory on $np rank(s) failed"; }
  line=$(grep '^RESULT memory' mem.txt) || fail "no RESULT line from ffn-bench memory on $np rank(s)"
  grep -q " ranks=$np " <<<"$line" || fail "ffn-bench memory: ranks is not $np: $line"
  finite_keys "memory on $np rank(s):" 0 "$line" floor_ms floor_gbs adam_ms adam_gbs
done
"$BENCH" memory --params 10 >bad.txt 2>&1 && fail "ffn-bench memory --params 10 was accepted"
grep -q -- "--params must be >= 4096" bad.txt || fail "ffn-bench memory --params 10: $(cat bad.txt)"
pass "ffn-bench memory reports the update's bandwidth on 1 and 2 ranks, and refuses a too small --params"
