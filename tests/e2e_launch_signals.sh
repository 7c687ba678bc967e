#!/usr/bin/env bash
# Stop requests to launch/local.sh (and so launch/mpirun-hosts.sh) with real mpirun and ranks:
#  1. INT, USR1, TERM or HUP at moments across the start (before mpirun, before the ranks take
#     signals, while they set up): every run ends with exit 75 within seconds, never trains to
#     the end, and leaves no process behind. (A signal in the first milliseconds, before bash
#     has set the launcher's traps, ends it by that signal before anything started: accepted.)
#  2. A hangup mid-run while the launcher's output pipe is closed (an ssh session gone): exit 75
#     with a checkpoint, nothing left running; the same command resumes from it.
#  3. Ctrl-C three or four times in a row (the later ones during mpirun's own shutdown): exit 75
#     or 130 as documented, never mpirun's crash (139), nothing left running.
REPO=$(cd "$(dirname "$0")/.." && pwd)
source "$(dirname "$0")/lib/common.sh"
L=$REPO/launch
export FFN_BIN=$FFN_TRAIN
"$FFN_DATA" synth blobs --rows 20000 --features 64 --classes 3 --noise 3 --seed 31 --out train.h5 >/dev/null
# 100 000 epochs of 313 steps: hours, far longer than any test waits (400 epochs took only 10 s
# even in the sanitizer build, so a lost stop request once passed for a finished run).
STEPS=31300000
TRAIN=(--train "$WORK/train.h5" --model dense:64:relu,dense:3 --epochs 100000 --batch-size 64 --seed 5 --quiet)
# start NAME: the launcher under a timeout (whose child it is), output in NAME.out / NAME.err.
start() {
  timeout -k 5 90 "$L/local.sh" -n 2 -t 1 -- "${TRAIN[@]}" --checkpoint-dir "$WORK/$1" >"$1.out" 2>"$1.err" &
  tpid=$!
  launcher=""
  # The launcher once it runs a launch script: between its fork and exec, timeout's child would
  # take (and lose) a signal meant for the launcher.
  for _ in $(seq 2000); do
    launcher=$(pgrep -P $tpid) && grep -qE "local.sh|mpirun-hosts.sh" "/proc/$launcher/cmdline" 2>/dev/null && break
    launcher=""
    sleep 0.002
  done
  [[ -n $launcher ]] || fail "$1: no launcher process"
}
finish() { rc=0; wait $tpid || rc=$?; }
# Nothing of this test's runs may outlive its launcher (ranks' arguments name $WORK).
no_leftovers() {
  local left
  sleep 0.3
  left=$(pgrep -af -- "$WORK/" | grep -v pgrep || true)
  [[ -z $left ]] || { kill -KILL $(pgrep -f -- "--checkpoint-dir $WORK/") 2>/dev/null; fail "$1: left running: $left"; }
}
steps_of() { local f; for f in "$1"/ckpt-*.h5; do [[ -f $f ]] && basename "$f" .h5 | sed 's/ckpt-0*//'; done; }

# ---- 1. early stop requests ------------------------------------------------------------------
n=0
for sig in INT USR1 TERM HUP; do
  for delay in 0.005 0.03 0.08 0.15 0.3; do
    n=$((n + 1))
    name=early$n
    start $name
    sleep $delay
    kill -$sig $launcher 2>/dev/null || true
    t0=$SECONDS
    finish
    # A signal before bash has set the launcher's traps ends it by that signal (documented):
    # accepted only when nothing had started.
    if [[ $rc == $((128 + $(kill -l $sig))) ]] && ! grep -q "^mpirun-hosts: .*mpirun " $name.err; then
      echo "  SIG$sig at $delay s: ended by the signal itself before anything started (exit $rc)"
      no_leftovers "SIG$sig at $delay s"
      continue
    fi
    [[ $rc == 75 ]] || { cat $name.err >&2; fail "SIG$sig $delay s after the start: exit $rc, expected 75"; }
    ((SECONDS - t0 < 30)) || fail "SIG$sig $delay s after the start: took $((SECONDS - t0)) s to stop"
    for s in $(steps_of $name); do ((s < STEPS)) || fail "SIG$sig $delay s after the start: trained to the end"; done
    no_leftovers "SIG$sig at $delay s"
    echo "  SIG$sig at $delay s: exit 75, checkpoints at step(s): $(steps_of $name | tr '\n' ' ')"
  done
done
pass "$n stop requests (INT, USR1, TERM, HUP) from 5 ms to 300 ms after the start: each exit 75, none trained on"

# ---- 2. hangup mid-run with the output pipe gone ---------------------------------------------
timeout -k 5 90 "$L/local.sh" -n 2 -t 1 -- "${TRAIN[@]}" --checkpoint-dir "$WORK/hup" 2>&1 | head -c 1 >/dev/null &
for _ in $(seq 300); do compgen -G "hup/ckpt-*.h5" >/dev/null && break; sleep 0.1; done
launcher=$(pgrep -f -- "mpirun-hosts.sh -n 2 -- .*$WORK/hup" | head -n 1)
[[ -n $launcher ]] || fail "hangup: no launcher running"
tpid=$(ps -o ppid= -p "$launcher" | tr -d ' ')
kill -HUP "$launcher"
# The launcher is not our child here (a pipeline's stage): wait for timeout to go.
for _ in $(seq 300); do kill -0 "$tpid" 2>/dev/null || break; sleep 0.1; done
wait || true
no_leftovers "hangup"
hup_step=$(steps_of hup | sort -n | tail -n 1)
[[ -n $hup_step ]] && ((hup_step < STEPS)) || fail "hangup: no checkpoint ($(steps_of hup | tr '\n' ' '))"
timeout -k 5 90 "$L/local.sh" -n 2 -t 1 -- "${TRAIN[@]}" --epochs 1 --checkpoint-dir "$WORK/hup" >hup2.out 2>hup2.err || true
grep -q "resuming from $WORK/hup/ckpt-" hup2.err || fail "hangup: the same command does not resume: $(cat hup2.err)"
pass "SIGHUP mid-run with the output pipe closed: checkpoint at step $hup_step, nothing left running, the same command resumes"

# ---- 3. Ctrl-C again and again -----------------------------------------------------------------
for gap in 0.02 0.1 0.3 0.6; do
  start ctrlc
  for _ in $(seq 300); do compgen -G "ctrlc/ckpt-*.h5" >/dev/null && break; sleep 0.1; done
  for _ in 1 2 3 4; do kill -INT $launcher 2>/dev/null || true; sleep $gap; done
  finish
  ! grep -q "Segmentation fault\|exit: 139" ctrlc.err || { cat ctrlc.err >&2; fail "Ctrl-C x4 ($gap s apart): mpirun crashed"; }
  [[ $rc == 75 || $rc == 130 ]] || { cat ctrlc.err >&2; fail "Ctrl-C x4 ($gap s apart): exit $rc, expected 75 or 130"; }
  no_leftovers "Ctrl-C x4 ($gap s apart)"
  echo "  Ctrl-C x4, $gap s apart: exit $rc"
  rm -rf ctrlc
done
pass "Ctrl-C four times (20 ms to 600 ms apart): exit 75 or 130, no mpirun crash, nothing left running"
