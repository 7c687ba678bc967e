#!/usr/bin/env bash
# The launchers' input handling, with stand-ins for mpirun, scontrol, cmake and dpkg-query that
# record their arguments (no MPI, no Slurm: launch/slurm.sbatch runs with SLURM_* set by hand):
#  - numbers (-n -N -t FFN_NP FFN_THREADS FFN_RANKS_PER_NODE FFN_MAX_RESTARTS ...) are digits
#    only: '$(...)' inside one is refused, never run; FFN_MAX_RESTARTS=2x no longer skips the cap;
#  - FFN_MPIRUN_ARGS / FFN_ARGS / FFN_LAUNCHER_ARGS keep quoted values with spaces and every line;
#  - checkpoint directories and job names are literal (glob[1], q? vs qa/), job names that are
#    not one path component are refused; a requeued start continues from its own checkpoints
#    even with --resume FILE in the arguments;
#  - a checkpoint directory whose ffn.lock is held by a live run is refused, naming the holder;
#  - FFN_BIN a directory, local.sh through a symlink, setup.sh --help / FFN_BUILD_TYPE / an
#    existing Debug build dir, datasets/fashion-mnist.sh --help.
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib/common.sh"
L=$REPO/launch
mkdir -p bin calls
# mpirun stand-in: argv to calls/N (NUL-separated). Like ffn-train, it writes a checkpoint
# (its content: the step) one "segment" (10 steps) after the one it resumes from, then exits
# $FAKE_RC (75: stopped).
cat >bin/mpirun <<'SH'
#!/usr/bin/env bash
n=$(ls "$CALLS" | wc -l)
printf '%s\0' "$@" >"$CALLS/$n"
dir="" resume="" prev=0
while (($#)); do
  case $1 in --checkpoint-dir) dir=$2 ;; --resume) resume=$2 ;; esac
  shift
done
if [[ -n $dir ]]; then
  mkdir -p "$dir"
  if [[ $resume == latest ]]; then resume=$(ls "$dir"/ckpt-*.h5 | sort | tail -n 1); fi
  [[ -n $resume ]] && prev=$(cat "$resume")
  printf '%d' $((prev + 10)) >"$(printf '%s/ckpt-%010d.h5' "$dir" $((prev + 10)))"
fi
exit "${FAKE_RC:-0}"
SH
printf '#!/bin/sh\necho "$*" >>"$CALLS/scontrol"\n' >bin/scontrol
printf '#!/bin/sh\necho "$*" >>"$CALLS/cmake"\n' >bin/cmake
printf '#!/bin/sh\nprintf "install ok installed"\n' >bin/dpkg-query
chmod +x bin/*
export PATH=$WORK/bin:$PATH CALLS=$WORK/calls FFN_MPIRUN=$WORK/bin/mpirun FFN_BIN=$FFN_TRAIN
last_call() { local f; f=$(ls calls | grep -E '^[0-9]+$' | sort -n | tail -n 1); [[ -n $f ]] && tr '\0' '\n' <"calls/$f"; }
ncalls() { ls calls | grep -cE '^[0-9]+$' || true; }
# run NAME EXPECTED_RC CMD...: runs CMD under a timeout, output in NAME.out; fails on another rc.
run() {
  local name=$1 want=$2 rc=0
  shift 2
  timeout -k 2 60 "$@" >"$name.out" 2>&1 || rc=$?
  [[ $rc == "$want" ]] || { cat "$name.out" >&2; fail "$name: exit $rc, expected $want"; }
}

# ---- numbers -----------------------------------------------------------------------------
evil='cores[$(touch pwned)]'
n0=$(ncalls)
run n-local 2 "$L/local.sh" -n "$evil" -- --epochs 1
run t-local 2 "$L/local.sh" -t "$evil" -- --epochs 1
run n-hosts 2 "$L/mpirun-hosts.sh" -n "$evil" -- --epochs 1
run N-hosts 2 "$L/mpirun-hosts.sh" -N "$evil" -- --epochs 1
run t-hosts 2 "$L/mpirun-hosts.sh" -t "$evil" -- --epochs 1
run np-env 2 env FFN_NP="$evil" "$L/local.sh" -- --epochs 1
run threads-env 2 env FFN_THREADS="$evil" "$L/mpirun-hosts.sh" -- --epochs 1
run per-node-env 2 env FFN_RANKS_PER_NODE="$evil" "$L/mpirun-hosts.sh" -- --epochs 1
run grace-env 2 env FFN_KILL_GRACE="$evil" "$L/mpirun-hosts.sh" -- --epochs 1
run zero-ranks 2 "$L/local.sh" -n 0 -- --epochs 1
grep -q "must be a whole number" n-hosts.out || fail "no message for a bad -n: $(cat n-hosts.out)"
[[ ! -e pwned ]] || fail "a command substitution in a number ran"
[[ $(ncalls) == "$n0" ]] || fail "mpirun started with a bad number"
run n-ok 0 "$L/local.sh" -n 08 -t 1 -- --epochs 1
last_call | grep -qx -- "-np" && [[ $(last_call | grep -A1 -x -- -np | tail -1) == 8 ]] ||
  fail "-n 08 did not become -np 8: $(last_call | tr '\n' ' ')"
pass "numbers: '\$(...)' in -n/-N/-t/FFN_NP/FFN_THREADS/FFN_RANKS_PER_NODE/FFN_KILL_GRACE refused (exit 2), never run; -n 08 is 8"

# ---- word splitting ------------------------------------------------------------------------
run rsh-agent 0 env FFN_MPIRUN_ARGS="--mca plm_rsh_agent \"ssh -p 2222\" --x \"a b\"'c'" "$L/mpirun-hosts.sh" -- --epochs 1
last_call | grep -qx "ssh -p 2222" || fail "FFN_MPIRUN_ARGS: the quoted agent is not one argument: $(last_call | tr '\n' '|')"
last_call | grep -qx "a bc" || fail "FFN_MPIRUN_ARGS: adjacent quotes: $(last_call | tr '\n' '|')"
run bad-quote 2 env FFN_MPIRUN_ARGS='--mca x "open' "$L/mpirun-hosts.sh" -- --epochs 1
pass "FFN_MPIRUN_ARGS: --mca plm_rsh_agent \"ssh -p 2222\" reaches mpirun as one argument; an unmatched quote is refused"

# ---- slurm.sbatch outside Slurm -------------------------------------------------------------
export SLURM_JOB_ID=4242 SLURM_SUBMIT_DIR=$WORK/sub SLURM_NTASKS=1 SLURM_RESTART_COUNT=0 SLURM_JOB_NAME=plain
mkdir -p sub
sbatch_run() { (cd sub && run "$@"); mv "sub/$1.out" .; }
sbatch_run ffn-args 0 env FFN_ARGS=$'--train t.h5\n--epochs 3\n--lr "1e-3"' bash "$L/slurm.sbatch"
last_call | grep -qx -- --epochs && last_call | grep -qx 1e-3 || fail "FFN_ARGS lost its later lines: $(last_call | tr '\n' ' ')"
sbatch_run launcher-args 0 env FFN_ARGS="--epochs 1" FFN_LAUNCHER_ARGS="--mca plm_rsh_agent 'ssh -p 2222'" bash "$L/slurm.sbatch"
last_call | grep -qx "ssh -p 2222" || fail "FFN_LAUNCHER_ARGS: $(last_call | tr '\n' '|')"
pass "FFN_ARGS keeps every line; FFN_LAUNCHER_ARGS keeps a quoted value"

for v in FFN_THREADS FFN_MAX_RESTARTS FFN_KILL_GRACE; do
  n0=$(ncalls)
  sbatch_run "sb-$v" 2 env "$v=$evil" bash "$L/slurm.sbatch" --epochs 1
  [[ ! -e sub/pwned && $(ncalls) == "$n0" ]] || fail "slurm.sbatch ran with $v=$evil"
done
# FFN_MAX_RESTARTS=2x used to make the cap's test fail and the job requeue forever.
rm -f calls/scontrol
sbatch_run max-restarts 2 env FFN_MAX_RESTARTS=2x FAKE_RC=75 SLURM_RESTART_COUNT=7 SLURM_JOB_NAME=cap bash "$L/slurm.sbatch" --epochs 1
[[ ! -e calls/scontrol ]] || fail "FFN_MAX_RESTARTS=2x: requeued ($(cat calls/scontrol))"
grep -q "FFN_MAX_RESTARTS must be a whole number" max-restarts.out || fail "FFN_MAX_RESTARTS=2x: $(cat max-restarts.out)"
pass "slurm.sbatch: '\$(...)' in FFN_THREADS/FFN_MAX_RESTARTS/FFN_KILL_GRACE refused; FFN_MAX_RESTARTS=2x refused instead of requeueing past the cap"

# ---- names are literal ----------------------------------------------------------------------
mkdir -p 'glob[1]' qa
printf 5 >'glob[1]/ckpt-0000000005.h5'
printf 5 >qa/ckpt-0000000005.h5
run glob-dir 0 "$L/mpirun-hosts.sh" -- --epochs 1 --checkpoint-dir 'glob[1]'
grep -q "resuming from glob\[1\]/ckpt-0000000005.h5" glob-dir.out && last_call | grep -qx latest ||
  fail "checkpoint dir glob[1]: not resumed: $(cat glob-dir.out)"
run q-dir 0 "$L/mpirun-hosts.sh" -- --epochs 1 --checkpoint-dir 'q?'
! grep -q resuming q-dir.out && ! last_call | grep -qx -- --resume || fail "checkpoint dir q?: resumed from qa/: $(cat q-dir.out)"
mkdir -p 'sub/runs/glob[1]/checkpoints'
printf 5 >'sub/runs/glob[1]/checkpoints/ckpt-0000000005.h5'
sbatch_run sb-glob 0 env SLURM_JOB_NAME='glob[1]' bash "$L/slurm.sbatch" --epochs 1
grep -q "resuming from .*glob\[1\]/checkpoints/ckpt-0000000005.h5" sb-glob.out || fail "job glob[1] did not resume: $(cat sb-glob.out)"
for name in ../../esc a/b .. .; do
  n0=$(ncalls)
  sbatch_run sb-name 2 env SLURM_JOB_NAME="$name" bash "$L/slurm.sbatch" --epochs 1
  grep -q "is not one path component" sb-name.out || fail "job name $name: $(cat sb-name.out)"
  [[ $(ncalls) == "$n0" ]] || fail "job name $name: started"
done
[[ ! -e $WORK/esc && ! -e esc && ! -e sub/runs/a ]] || fail "a refused job name created a directory"
pass "names are literal: glob[1] resumes, q? does not take qa/; job names ../../esc, a/b, .., . refused (exit 2)"

# ---- --resume FILE and requeued starts -------------------------------------------------------
printf 100 >start.h5
rm -f calls/scontrol
for r in 0 1 2; do
  sbatch_run "seg$r" 0 env FAKE_RC=75 SLURM_JOB_NAME=seg SLURM_RESTART_COUNT=$r bash "$L/slurm.sbatch" --epochs 1 --resume "$WORK/start.h5"
done
steps=$(cat sub/runs/seg/checkpoints/ckpt-*.h5 | tr -d '\n'; ls sub/runs/seg/checkpoints | tr '\n' ' ')
[[ -f sub/runs/seg/checkpoints/ckpt-0000000130.h5 ]] || fail "requeued starts went back to --resume FILE: checkpoints $steps; $(cat seg2.out)"
[[ $(grep -c requeue calls/scontrol) == 3 ]] || fail "expected 3 requeues: $(cat calls/scontrol)"
grep -q "not the arguments' --resume" seg1.out || fail "no note on the replaced --resume: $(cat seg1.out)"
pass "--resume FILE: start 0 from FILE (step 110), requeued starts continue (120, 130), each requeued"

# ---- the checkpoint lock -------------------------------------------------------------------
mkdir -p live
echo "host=elsewhere pid=4711 started=2024-01-01T00:00:00Z" >live/ffn.lock
printf 5 >live/ckpt-0000000005.h5
# A live run, as ffn-train's rank 0 holds it: an flock for the process's life.
(exec 9>>live/ffn.lock && flock 9 && exec sleep 30) &
holder=$!
for _ in $(seq 50); do flock -n live/ffn.lock true || break; sleep 0.1; done
n0=$(ncalls)
run locked 1 "$L/local.sh" -n 1 -- --epochs 1 --checkpoint-dir live
grep -q "in use by another run (host=elsewhere pid=4711 started=2024-01-01T00:00:00Z)" locked.out || fail "lock: $(cat locked.out)"
mkdir -p sub/runs/busy
ln -s "$WORK/live" sub/runs/busy/checkpoints
sbatch_run sb-locked 1 env SLURM_JOB_NAME=busy bash "$L/slurm.sbatch" --epochs 1
grep -q "in use by another run (host=elsewhere pid=4711" sb-locked.out || fail "slurm lock: $(cat sb-locked.out)"
[[ $(ncalls) == "$n0" ]] || fail "started into a locked checkpoint directory"
kill "$holder"
wait "$holder" 2>/dev/null || true
run unlocked 0 "$L/local.sh" -n 1 -- --epochs 1 --checkpoint-dir live
grep -q "resuming from live/ckpt" unlocked.out || fail "a stale (unheld) ffn.lock stopped the run: $(cat unlocked.out)"
pass "a held ffn.lock is refused by local.sh and slurm.sbatch (exit 1) naming the holder; a stale one is not"

# ---- odds and ends ------------------------------------------------------------------------
mkdir -p notbin
run bin-dir 2 env FFN_BIN="$WORK/notbin" "$L/mpirun-hosts.sh" -- --epochs 1
grep -q "ffn-train not found" bin-dir.out || fail "FFN_BIN=dir: $(cat bin-dir.out)"
ln -s "$L/local.sh" my-local
run symlink 0 ./my-local -n 1 -- --epochs 1
grep -q "mpirun-hosts: " symlink.out || fail "local.sh through a symlink: $(cat symlink.out)"
run setup-help 0 bash "$L/setup.sh" --help
grep -q "usage" setup-help.out && [[ ! -e calls/cmake ]] || fail "setup.sh --help: $(cat setup-help.out; cat calls/cmake 2>/dev/null)"
mkdir -p dbg
echo "CMAKE_BUILD_TYPE:STRING=Debug" >dbg/CMakeCache.txt
run setup-debug 0 env FFN_BUILD_DIR="$WORK/dbg" bash "$L/setup.sh"
grep -q -- "-DCMAKE_BUILD_TYPE=Debug" calls/cmake || fail "setup.sh switched a Debug build dir: $(cat calls/cmake)"
rm calls/cmake
run setup-type 0 env FFN_BUILD_DIR="$WORK/dbg" FFN_BUILD_TYPE="Rel With Spaces" bash "$L/setup.sh"
grep -q "switching .* from a Debug build to Rel With Spaces" setup-type.out || fail "setup.sh did not say it switches: $(cat setup-type.out)"
run fmnist-help 0 bash "$REPO/datasets/fashion-mnist.sh" --help
grep -q "usage" fmnist-help.out && [[ ! -e --help && ! -e data ]] || fail "fashion-mnist.sh --help: $(cat fmnist-help.out)"
pass "FFN_BIN=a directory refused; local.sh through a symlink; setup.sh --help builds nothing, keeps a Debug dir, says when it switches; fashion-mnist.sh --help creates nothing"
