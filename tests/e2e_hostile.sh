#!/usr/bin/env bash
# Hostile HDF5 files against the tools (the library's own cases are in
# test_hostile_files.c; the fuzz targets in tests/fuzz explore the rest). Each
# must end in a clean message or a clean listing: no crash, no out-of-bounds
# access (the sanitizer pass of .ci/run runs this under ASan + UBSan).
#  - Attributes holding arrays (strings, fixed strings, ints, floats) where one
#    value is usual: ffn-data info read every element into a one-value buffer.
#  - /x declared [1, 2^61] (a chunked dataset with no data written: a tiny
#    file): ffn-data info sized its read buffer as 65536 * features * 4, which
#    wrapped around to a small allocation that the read then overran.
source "$(dirname "$0")/lib/common.sh"
"$PY" - <<'PY'
import h5py, numpy as np
with h5py.File("arrays.h5", "w") as f:
    f["x"] = np.ones((6, 2), np.float32); f["y"] = np.arange(6, dtype=np.int32) % 2
    f.attrs["num_classes"] = 2
    f.attrs.create("source", ["a", "b" * 200, "c"], dtype=h5py.string_dtype())
    f.attrs.create("created_by", np.array([b"x" * 30, b"y" * 30]))
    f.attrs["counts"] = np.arange(50, dtype=np.int64)
    f.attrs["weights"] = np.linspace(0, 1, 50)
with h5py.File("wide.h5", "w") as f:
    f.create_dataset("x", shape=(1, 2**61), dtype=np.float32, chunks=(1, 1024))
    f["y"] = np.zeros(1, np.int32)
PY
"$FFN_DATA" info arrays.h5 >info.txt || fail "ffn-data info on array attributes: exit $? $(cat info.txt)"
grep -q "attribute source = (3 values)" info.txt && grep -q "attribute counts = (50 values)" info.txt \
  || fail "ffn-data info: array attributes not listed as arrays: $(cat info.txt)"
pass "ffn-data info lists array attributes without reading them into one value"

set +e
"$FFN_DATA" info wide.h5 >out.txt 2>err.txt; rc=$?
set -e
[[ $rc -ne 0 && $rc -lt 128 ]] || fail "ffn-data info on a 2^61-wide /x: exit $rc $(cat err.txt)"
grep -q "wide.h5" err.txt || fail "ffn-data info on a 2^61-wide /x: no message naming the file: $(cat err.txt)"
pass "ffn-data info on a 2^61-wide /x: exit $rc, $(head -1 err.txt)"
set +e
"$FFN_TRAIN" --train wide.h5 --model dense:2 --quiet --threads 1 >out.txt 2>err.txt; rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "error: .*out of memory" err.txt || fail "ffn-train on a 2^61-wide /x: exit $rc $(cat err.txt)"
pass "ffn-train on a 2^61-wide /x: exit 1, $(head -1 err.txt)"

# A file on which HDF5 1.10 itself loops forever while opening /x (a damaged
# virtual-dataset mapping, found by fuzz_dataset; h5dump hangs on it too):
# the open watchdog ends the run with one message, and a 2-rank job ends.
LOOP=$(cd "$(dirname "$0")" && pwd)/data/hdf5-loop
cp "$LOOP"/*.h5 .
t0=$(date +%s)
set +e
FFN_OPEN_TIMEOUT=3 timeout -k 5 60 "$FFN_DATA" info data.h5 >out.txt 2>err.txt; rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "data.h5: opening the dataset did not finish in 3 s" err.txt \
  || fail "ffn-data info on a file HDF5 loops on: exit $rc $(cat err.txt)"
set +e
FFN_OPEN_TIMEOUT=3 mpi 2 -x FFN_OPEN_TIMEOUT "$FFN_TRAIN" --train data.h5 --model dense:2 --quiet --threads 1 >out.txt 2>err.txt; rc=$?
set -e
secs=$(( $(date +%s) - t0 ))
[[ $rc -ne 0 && $rc -ne 124 && $rc -ne 137 ]] && grep -q "data.h5: opening the dataset did not finish" err.txt \
  || fail "ffn-train -np 2 on a file HDF5 loops on: exit $rc $(cat err.txt)"
(( secs < 40 )) || fail "the looping file took $secs s to be refused"
pass "a file HDF5 loops on: ffn-data info and a 2-rank ffn-train end in $secs s with $(head -1 err.txt | cut -c1-90)..."
