#!/usr/bin/env bash
# Scale: gradient accumulation equals a K-times larger batch, and the ZeRO-1
# sharded optimizer equals the unsharded one (1/N of the optimizer state per
# rank), at several rank counts, with checkpoints that stay independent of
# the rank count and of the sharding.
source "$(dirname "$0")/lib/common.sh"

"$FFN_DATA" synth blobs --rows 1200 --features 10 --classes 3 --noise 2 --seed 21 --out train.h5 >/dev/null
ARGS=(--train train.h5 --model dense:24:relu,dense:12:tanh,dense:3 --loss softmax_ce --optimizer adam
      --lr 0.003 --seed 9 --quiet --threads 1 --log-every 1 --epochs 2)
# compare REF.csv DIR_REF OTHER.csv DIR_OTHER PARAM_BOUND: loss curves within 1e-4 relative,
# final checkpoints' parameters and optimizer state within PARAM_BOUND.
compare() {
  "$PY" - "$@" <<'PY'
import csv, glob, sys, h5py, numpy as np
ref_csv, ref_dir, csv_, dir_, bound = sys.argv[1:6]
def curve(f): return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(f)) if r["kind"] == "step"}
a, b = curve(ref_csv), curve(csv_)
assert sorted(b) and set(b) <= set(a), (sorted(a)[:3], sorted(b)[:3])
rel = max(abs(b[s] - a[s]) / abs(a[s]) for s in b)
fa, fb = h5py.File(sorted(glob.glob(ref_dir + "/ckpt-*.h5"))[-1]), h5py.File(sorted(glob.glob(dir_ + "/ckpt-*.h5"))[-1])
assert fa["train"].attrs["step"] == fb["train"].attrs["step"]
names = []
fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
worst = max(float(np.max(np.abs(fa[n][()] - fb[n][()]))) for n in names)
print(f"{csv_}: {len(b)} steps, max relative loss difference {rel:.2e} (bound 1e-4); "
      f"parameters and optimizer state within {worst:.2e} (bound {bound})")
assert rel < 1e-4 and worst < float(bound)
PY
}

# 1. --accumulate 4 of batch 16 = batch 64, at 1 and 2 ranks. 1200 rows: 75 batches of 16 per
#    epoch, so 19 steps of 4 (the last of 3 batches = 48 rows), exactly as 19 batches of 64.
"$FFN_TRAIN" "${ARGS[@]}" --batch-size 64 --metrics b64.csv --checkpoint-dir b64 >/dev/null
for np in 1 2; do
  mpi $np "$FFN_TRAIN" "${ARGS[@]}" --batch-size 16 --accumulate 4 --metrics acc$np.csv --checkpoint-dir acc$np >/dev/null
  compare b64.csv b64 acc$np.csv acc$np 1e-5 || fail "--accumulate 4 at -np $np differs from --batch-size 64"
done
pass "--accumulate 4 x batch 16 = batch 64 at 1 and 2 ranks"

# Resume inside an accumulated run: bitwise; another --accumulate is refused.
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --batch-size 16 --accumulate 4 --max-steps 10 --checkpoint-dir accp >/dev/null
mpi 2 "$FFN_TRAIN" "${ARGS[@]}" --batch-size 16 --accumulate 4 --resume accp/ckpt-0000000010.h5 --checkpoint-dir accr >/dev/null
cmp -s <("$PY" -c "import h5py,sys; f=h5py.File('acc2/ckpt-0000000038.h5'); [sys.stdout.buffer.write(f[n][()].tobytes()) for n in ('model/0/W','model/2/W','optimizer/v')]") \
       <("$PY" -c "import h5py,sys; f=h5py.File('accr/ckpt-0000000038.h5'); [sys.stdout.buffer.write(f[n][()].tobytes()) for n in ('model/0/W','model/2/W','optimizer/v')]") \
  || fail "resumed accumulated run is not bitwise identical"
set +e; "$FFN_TRAIN" "${ARGS[@]}" --batch-size 16 --accumulate 2 --resume accp/ckpt-0000000010.h5 >/dev/null 2>err.txt; rc=$?; set -e
[[ $rc -eq 2 ]] && grep -q "trained with --accumulate 4, but --accumulate is 2" err.txt || fail "accumulate mismatch: rc $rc $(cat err.txt)"
pass "resume with --accumulate: bitwise; a different K refused"

# 2. --shard-optimizer at 1, 2 and 3 ranks = the unsharded 1-rank run (with global-norm clipping).
Z=("${ARGS[@]}" --batch-size 32 --clip-norm 0.5)
"$FFN_TRAIN" "${Z[@]}" --metrics ref.csv --checkpoint-dir ref >/dev/null
for np in 1 2 3; do
  mpi $np "$FFN_TRAIN" "${Z[@]}" --shard-optimizer --metrics z$np.csv --checkpoint-dir z$np >/dev/null
  compare ref.csv ref z$np.csv z$np 1e-5 || fail "--shard-optimizer at -np $np differs from the unsharded run"
done
cmp -s <(cut -d, -f1-5 ref.csv) <(cut -d, -f1-5 z1.csv) || fail "--shard-optimizer at -np 1 is not bitwise the unsharded run"
pass "--shard-optimizer at 1 (bitwise), 2 and 3 ranks follows the unsharded run"

# With a frozen layer the slices of fixed tensors are neither updated nor gathered.
"$FFN_TRAIN" "${Z[@]}" --freeze 1 --metrics fref.csv --checkpoint-dir fref >/dev/null
mpi 3 "$FFN_TRAIN" "${Z[@]}" --freeze 1 --shard-optimizer --metrics fz3.csv --checkpoint-dir fz3 >/dev/null
compare fref.csv fref fz3.csv fz3 1e-5 || fail "--shard-optimizer --freeze 1 at -np 3 differs from the unsharded run"
"$PY" -c "
import h5py, numpy as np
a, b = h5py.File('fz3/ckpt-0000000076.h5'), h5py.File('fref/ckpt-0000000076.h5')
assert np.array_equal(a['model/1/W'][()], b['model/1/W'][()]), 'frozen layer differs'
" || fail "frozen layer moved or differs under --shard-optimizer"
pass "--shard-optimizer with a frozen layer at 3 ranks"

# Per-rank optimizer memory: 1/N of the unsharded state.
LOUD=()
for a in "${Z[@]}"; do [[ $a == --quiet ]] || LOUD+=("$a"); done
mpi 3 "$FFN_TRAIN" "${LOUD[@]}" --shard-optimizer --max-steps 1 >banner.txt
line=$(grep "optimizer state:" banner.txt) || fail "no optimizer state line: $(cat banner.txt)"
"$PY" - "$line" <<'PY' || fail "sharded optimizer memory is not 1/3: $line"
import re, sys
m = re.search(r"rank 0: (\d+) of (\d+) parameters x 2 buffers", sys.argv[1])
n, total = int(m[1]), int(m[2])
assert n == total // 3, (n, total)
PY
pass "$line"

# 3. Checkpoints do not depend on the rank count: save sharded at 2 ranks after epoch 1, resume
#    sharded at 3 ranks and unsharded at 1 rank; both follow the uninterrupted curve.
mpi 2 "$FFN_TRAIN" "${Z[@]}" --shard-optimizer --epochs 1 --checkpoint-dir zpart >/dev/null
"$PY" -c "
import h5py
f = h5py.File('zpart/ckpt-0000000038.h5')
assert f['optimizer/m'].shape == f['optimizer/v'].shape == (10 * 24 + 24 + 24 * 12 + 12 + 12 * 3 + 3,)
" || fail "the sharded checkpoint does not hold the full optimizer state"
mpi 3 "$FFN_TRAIN" "${Z[@]}" --shard-optimizer --resume zpart/ckpt-0000000038.h5 --metrics zr3.csv --checkpoint-dir zr3 >/dev/null
"$FFN_TRAIN" "${Z[@]}" --resume zpart/ckpt-0000000038.h5 --metrics zr1.csv --checkpoint-dir zr1 >/dev/null
compare ref.csv ref zr3.csv zr3 1e-5 || fail "sharded -np 2 checkpoint resumed sharded at -np 3 diverged"
compare ref.csv ref zr1.csv zr1 1e-5 || fail "sharded -np 2 checkpoint resumed unsharded at -np 1 diverged"
pass "a sharded checkpoint from 2 ranks resumes at 3 ranks sharded and 1 rank unsharded"
