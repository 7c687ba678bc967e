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
