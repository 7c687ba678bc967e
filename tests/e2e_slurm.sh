#!/usr/bin/env bash
# ctest-labels: slow
# (skipped in the sanitizer pass of .ci/run: its time is the Slurm daemons and job timers; the
# SIGUSR1 -> checkpoint -> exit 75 -> resume path runs under ASan in e2e_checkpoint)
# launch/slurm.sbatch under a real single-node Slurm that this test starts on this machine
# (munged, slurmctld and slurmd in a temporary directory, on free ports, stopped by a trap).
#  1. A 2-rank job gets SIGUSR1 in its batch shell mid-run (scancel --signal=USR1 --batch,
#     as Slurm's --signal=B:USR1@lead does), checkpoints, exits 75, requeues itself,
#     resumes and finishes: COMPLETED, with final parameters bitwise equal to an
#     uninterrupted run's.
#  2. A job with --time=2 --signal=B:USR1@110 gets the signal from Slurm's own timer before
#     its limit, checkpoints and is requeued; the resumed run is then cancelled (SIGTERM to
#     every process) and still leaves a newer checkpoint.
#  3. A job whose --metrics file already exists gets SIGUSR1 as soon as it runs: the stop waits
#     until the ranks take it and the job ends with exit 75 instead of training to the end.
#  4. sbatch -J ../esc: the script refuses the name (its log says why) and writes no run
#     directory outside runs/.
# Skipped (exit 77) with the reason where Slurm cannot start here.
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib/common.sh"
SBATCH_SCRIPT=$REPO/launch/slurm.sbatch

skip() { echo "SKIP: $*" >&2; exit 77; }
for c in munged slurmctld slurmd sbatch scontrol squeue scancel; do
  command -v "$c" >/dev/null || skip "$c not installed (apt-get install slurm-wlm munge, or bash launch/setup.sh --test-deps)"
done
[[ $(id -u) -eq 0 ]] || skip "slurmd must run as root to start jobs"

S=$WORK/slurm
mkdir -p "$S"/{state,spool,log,munge,pmix}
chmod 755 "$S" "$S/munge"
daemons=()
cleanup() {
  set +e
  if [[ -f $S/slurm.conf ]]; then
    scancel --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null
    for _ in $(seq 20); do [[ -z $(squeue -h 2>/dev/null) ]] && break; sleep 0.5; done
  fi
  for p in "${daemons[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  # Anything left from the jobs (slurmstepd, mpirun, ranks) carries this instance's SLURM_CONF.
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [[ $p == "$$" ]] && continue
    { tr '\0' '\n' <"$e" | grep -qx "SLURM_CONF=$S/slurm.conf"; } 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  for p in "${daemons[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
show_logs() { for f in "$S"/log/*.log; do echo "== $f"; tail -n 15 "$f"; done >&2; }

# munge: a fresh key and a private socket.
dd if=/dev/urandom of="$S/munge/munge.key" bs=128 count=1 status=none
chmod 600 "$S/munge/munge.key"
munged --force --foreground --key-file="$S/munge/munge.key" --socket="$S/munge/munge.sock" \
  --pid-file="$S/munge/munged.pid" --log-file="$S/log/munged.log" --seed-file="$S/munge/seed" \
  >>"$S/log/munged.log" 2>&1 &
daemons+=($!)
for _ in $(seq 50); do [[ -S $S/munge/munge.sock ]] && break; sleep 0.1; done
echo probe | munge --socket="$S/munge/munge.sock" | unmunge --socket="$S/munge/munge.sock" >/dev/null 2>&1 ||
  { show_logs; skip "munged did not start"; }

# Two free TCP ports.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if command -v ss >/dev/null; then [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] && break; else break; fi
  done
  echo "$p"
}
ctld_port=$(free_port)
slurmd_port=$(free_port)
[[ $slurmd_port != "$ctld_port" ]] || slurmd_port=$((ctld_port + 1))
host=$(hostname -s)
# The node as slurmd sees it (CPUs, sockets, cores, threads, memory).
node=$(slurmd -C 2>/dev/null | grep -m1 '^NodeName=' | sed -E "s/^NodeName=[^ ]+//")
[[ -n $node ]] || skip "slurmd -C did not describe this machine"
cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$node")
ranks=$((cpus >= 2 ? 2 : 1))
cat >"$S/slurm.conf" <<EOF
ClusterName=ffntest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$S/munge/munge.sock,cred_expire=5
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
KillWait=15
MinJobAge=600
# Job ids and PMIx's directories (/tmp/spmix_appdir_<uid>_<job>.<step> by default) apart from
# any other Slurm on this machine, such as this test running twice at once.
FirstJobId=$((1000 + RANDOM * 30 + RANDOM % 30))
NodeName=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
echo "PMIxCliTmpDirBase=$S/pmix" >"$S/mpi.conf"
export SLURM_CONF=$S/slurm.conf
slurmctld -D -i >"$S/log/slurmctld.out" 2>&1 &
daemons+=($!)
slurmd -D >"$S/log/slurmd.out" 2>&1 &
daemons+=($!)
t_start=$SECONDS
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null)
  [[ $state == idle ]] && break
  sleep 0.5
done
[[ $state == idle ]] || { show_logs; skip "Slurm did not come up (node state '${state:-none}')"; }
pass "Slurm $(sinfo --version | cut -d' ' -f2) up in $((SECONDS - t_start)) s: node $host ($node), ports $ctld_port/$slurmd_port"

# Wide enough that the job runs for seconds (it is signalled after its first checkpoint).
"$FFN_DATA" synth blobs --rows 20000 --features 256 --classes 3 --noise 3 --seed 31 --out train.h5 >/dev/null
TRAIN=(--train train.h5 --model dense:512:relu,dense:512:relu,dense:3 --loss softmax_ce --optimizer adam --lr 0.002
       --batch-size 64 --seed 17 --threads 1 --log-every 10)
export FFN_BIN=$FFN_TRAIN FFN_KILL_GRACE=2
job_state() { scontrol show job "$1" 2>/dev/null | sed -nE 's/.*JobState=([A-Z_]+).*/\1/p'; }
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every half second.
wait_for() {
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@"; do
    ((SECONDS - t0 < limit)) || { show_logs; cat "$WORK"/*.out >&2 2>/dev/null; fail "timed out after ${limit} s waiting for $what"; }
    sleep 0.5
  done
}
have_ckpt() { compgen -G "$1/ckpt-*.h5" >/dev/null; }
ckpt_step() { "$PY" -c "import h5py, sys; print(int(h5py.File(sys.argv[1])['train'].attrs['step']))" "$1"; }
latest() { compgen -G "$1/ckpt-*.h5" | LC_ALL=C sort | tail -n 1; }

# ---- 1. signalled (USR1 to the batch shell), requeued, resumed, completed -------------------
# 20000 rows in global batches of 64: 313 steps an epoch; 10 epochs = 3130 steps, a checkpoint every 100.
STEPS=3130
t0=$SECONDS
jid=$(sbatch --parsable -J main -D "$WORK" --ntasks-per-node=$ranks --cpus-per-task=1 --time=10 \
  "$SBATCH_SCRIPT" "${TRAIN[@]}" --epochs 10 --checkpoint-every 100) || fail "sbatch refused the job"
RUN=$WORK/runs/main
LOG=$WORK/main-$jid.out
wait_for 60 "the first checkpoint of job $jid" have_ckpt "$RUN/checkpoints"
scancel --signal=USR1 --batch "$jid"
t_sig=$SECONDS
job_done() { local s; s=$(job_state "$jid"); [[ -n $s && $s != RUNNING && $s != PENDING && $s != REQUEUED && $s != COMPLETING ]]; }
wait_for 120 "job $jid to finish" job_done
[[ $(job_state "$jid") == COMPLETED ]] || { cat "$LOG" >&2; fail "job $jid ended $(job_state "$jid")"; }
t_job=$((SECONDS - t0))
restarts=$(scontrol show job "$jid" | sed -nE 's/.*Restarts=([0-9]+).*/\1/p')
for pattern in "restart 0: got SIGUSR1: asking every rank to checkpoint" "mpirun: Forwarding signal 10 to job" \
  "ffn-train: stopped by a signal after step" "restart 0: ffn-train stopped after a signal \(exit 75\)" \
  "restart 0: requeueing job $jid" "restart 1: resuming from .*ckpt-" "^resuming from: " \
  "restart 1: ffn-train finished \(exit 0\)"; do
  grep -Eq "$pattern" "$LOG" || { cat "$LOG" >&2; fail "job log lacks /$pattern/"; }
done
stop_step=$(grep -oE "stopped by a signal after step [0-9]+" "$LOG" | grep -oE "[0-9]+$")
final=$(latest "$RUN/checkpoints")
[[ $(ckpt_step "$final") == "$STEPS" ]] || fail "final checkpoint $final is at step $(ckpt_step "$final"), expected $STEPS"
# The same training uninterrupted, outside Slurm.
mpi $ranks "$FFN_TRAIN" "${TRAIN[@]}" --epochs 10 --checkpoint-every 100 --quiet --checkpoint-dir ref >/dev/null
"$PY" - "$final" "ref/$(printf "ckpt-%010d.h5" "$STEPS")" <<'PY' || fail "the signalled, requeued and resumed job differs from an uninterrupted run"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
assert names
for n in names:
    assert np.array_equal(a[n][()], b[n][()]), n
PY
"$PY" - "$RUN/metrics-$jid.0.jsonl" "$RUN/metrics-$jid.1.jsonl" "$stop_step" "$STEPS" <<'PY' || fail "metrics files of the two runs"
import json, sys
first, second, stop, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
recs = lambda f: [r["step"] for r in map(json.loads, open(f)) if r["kind"] == "step"]
a, b = recs(first), recs(second)
assert a and max(a) <= stop, (a[-3:], stop)
assert b and min(b) > stop and max(b) == steps, (b[:3], b[-1:], stop)
PY
pass "job $jid: USR1 at $((t_sig - t0)) s, stopped after step $stop_step (exit 75), requeued ($restarts restart), resumed, COMPLETED in $t_job s; final step $STEPS bitwise equal to an uninterrupted run"

# ---- 2. Slurm's own --signal timer before the time limit, then scancel ----------------------
# Checkpoints only when stopped (--checkpoint-every far beyond the run), so each one marks a stop.
# This job starts its ranks with srun (Slurm's PMIx plugin) where Slurm has it, so both
# launchers are covered: srun forwards SIGUSR1 to every task as mpirun does.
launcher=mpirun
srun --mpi=list 2>&1 | grep -q pmix && launcher=srun
t0=$SECONDS
jid=$(FFN_LAUNCHER=$launcher sbatch --parsable -J timer -D "$WORK" --ntasks-per-node=$ranks --cpus-per-task=1 --time=2 --signal=B:USR1@110 \
  "$SBATCH_SCRIPT" "${TRAIN[@]}" --epochs 100000 --checkpoint-every 1000000000) || fail "sbatch refused the job"
RUN=$WORK/runs/timer
LOG=$WORK/timer-$jid.out
requeued() {
  grep -q "restart 0: requeueing job $jid" "$LOG" 2>/dev/null && return 0
  case $(job_state "$jid") in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY)
      cat "$LOG" >&2; show_logs; fail "job $jid ended $(job_state "$jid") without requeueing itself" ;;
  esac
  return 1
}
# Slurm checks for due signals every 30 s: the signal due 10 s after the start comes by ~40 s,
# well before the limit even on a loaded machine.
wait_for 80 "Slurm's timer to signal job $jid" requeued
t_req=$SECONDS
grep -q "restart 0: got SIGUSR1" "$LOG" && grep -q "restart 0: ffn-train stopped after a signal (exit 75)" "$LOG" ||
  { cat "$LOG" >&2; fail "timer job log"; }
resumed() { resumed_from=$(sed -nE 's/.*restart 1: resuming from (.*)/\1/p' "$LOG"); [[ -n $resumed_from ]]; }
wait_for 60 "job $jid to resume" resumed
resume_step=$(ckpt_step "$resumed_from")
training() { grep -q '"kind": *"step"' "$RUN/metrics-$jid.1.jsonl" 2>/dev/null; }
wait_for 60 "the resumed job $jid to train" training
scancel "$jid"
wait_for 40 "job $jid to end after scancel" job_done
[[ $(job_state "$jid") == CANCELLED ]] || fail "timer job ended $(job_state "$jid"), expected CANCELLED"
grep -q "restart 1: got SIGTERM" "$LOG" || { cat "$LOG" >&2; fail "the batch shell did not see scancel's SIGTERM"; }
grep -q "restart 1: requeueing" "$LOG" && fail "requeued after scancel"
# Every rank got SIGTERM too, finished its step, and rank 0 wrote a checkpoint on the way out.
term_ckpt=$(latest "$RUN/checkpoints")
term_step=$(ckpt_step "$term_ckpt")
((term_step > resume_step)) || { cat "$LOG" >&2; fail "no checkpoint written on scancel's SIGTERM (resumed at $resume_step)"; }
pass "job $jid ($launcher): Slurm's --signal=B:USR1@110 timer fired $((t_req - t0)) s into a 2-minute job; checkpoint, exit 75, requeue, resumed from step $resume_step; scancel: CANCELLED, not requeued, checkpoint at step $term_step on the way out"

# ---- 3. SIGUSR1 as the job starts, its metrics file already there -----------------------------
echo '{"kind": "old"}' >old-metrics.jsonl
t0=$SECONDS
jid=$(FFN_MAX_RESTARTS=0 sbatch --parsable -J early -D "$WORK" --ntasks-per-node=$ranks --cpus-per-task=1 --time=10 \
  "$SBATCH_SCRIPT" "${TRAIN[@]}" --epochs 100000 --metrics "$WORK/old-metrics.jsonl") || fail "sbatch refused the job"
LOG=$WORK/early-$jid.out
job_running() { [[ $(job_state "$jid") == RUNNING && -s $LOG ]]; }
wait_for 60 "job $jid to start" job_running
scancel --signal=USR1 --batch "$jid"
wait_for 90 "job $jid to end after its early SIGUSR1" job_done
grep -q "restart 0: ffn-train stopped after a signal (exit 75)" "$LOG" || { cat "$LOG" >&2; fail "early SIGUSR1: the job did not stop with exit 75"; }
grep -q "finished (exit 0)" "$LOG" && fail "early SIGUSR1: trained to the end"
pass "job $jid: SIGUSR1 as it started (its --metrics file already there): stopped with exit 75 after $((SECONDS - t0)) s, $(job_state "$jid")"

# ---- 4. a job name that is a path ------------------------------------------------------------
mkdir -p "$WORK/sub"
jid=$(sbatch --parsable -J ../esc -D "$WORK/sub" --ntasks-per-node=1 --time=1 "$SBATCH_SCRIPT" "${TRAIN[@]}" --epochs 1) ||
  fail "sbatch refused the job"
wait_for 60 "job $jid (named ../esc) to end" job_done
[[ $(job_state "$jid") == FAILED ]] || fail "job ../esc ended $(job_state "$jid")"
grep -q "is not one path component" "$WORK/esc-$jid.out" || fail "job ../esc: $(cat "$WORK/esc-$jid.out" 2>&1)"
[[ ! -e $WORK/esc && ! -e $WORK/sub/runs ]] || fail "job ../esc wrote a run directory"
pass "job $jid named ../esc: refused with a message in its log, no run directory written"
