#!/usr/bin/env bash
# ffn-train over several machines with plain mpirun and a hostfile (no batch system).
#
#   launch/mpirun-hosts.sh -f hosts -N 2 -t 8 -i eth0 -- --train data/train.h5 --epochs 20 \
#       --checkpoint-dir /shared/run1/checkpoints
#
# Options (each also read from the environment variable in brackets):
#   -f FILE  Open MPI hostfile, one machine a line: "node01 slots=2" [FFN_HOSTFILE];
#            without one, every rank runs on this machine
#   -N R     ranks per machine [FFN_RANKS_PER_NODE; default: the hostfile's slots]
#   -n NP    total ranks [FFN_NP; default: R x machines in the hostfile, else mpirun's default]
#   -t T     BLAS threads per rank [FFN_THREADS; default: ffn-train's, cores / ranks per machine];
#            with T > 1 each rank is bound to T cores (--map-by ...:PE=T) unless FFN_BIND=none
#   -i IF    network interfaces or subnets (comma-separated: eth0 or 10.1.0.0/16) that Open MPI's
#            TCP transport and its runtime use [FFN_IFACE]
# Numbers are whole decimal numbers (digits only); anything else is refused (exit 2).
# Everything after the options (or after --) goes to ffn-train.
# More environment: FFN_BIN (ffn-train, default build/ffn-train next to this script),
# FFN_MPIRUN (mpirun), FFN_MPIRUN_ARGS (extra mpirun arguments, split into words as xargs does:
# quote a value that holds spaces, e.g. --mca plm_rsh_agent "ssh -p 2222"), FFN_CKPT_DIR (adds
# --checkpoint-dir when the arguments have none), FFN_KILL_GRACE (seconds mpirun waits before
# it escalates to SIGKILL; Open MPI's default is 1).
#
# Resuming: when the checkpoint directory (--checkpoint-dir, or FFN_CKPT_DIR) already holds a
# checkpoint and the arguments have no --resume, --resume latest is added (and --init-from /
# --replace-head dropped): run the same command again to continue. The directory must be on a
# filesystem every machine sees. While a live run holds that directory (its ffn.lock), a second
# launch into it is refused (exit 1), naming the run that holds it.
# Stopping: SIGUSR1, SIGTERM, SIGHUP (a closed terminal or ssh session) or Ctrl-C to this script
# asks every rank, on every machine, to finish its step; rank 0 writes a checkpoint; exit 75.
# A request that comes while the ranks are still starting is kept and passed on once they take
# it; one that comes before mpirun starts ends the script at once (exit 75, nothing started).
# A second Ctrl-C or SIGTERM stops at once (SIGKILL to the ranks on this machine, or SIGTERM to
# mpirun when none is; no new checkpoint; exit 130); signals after that are ignored while
# mpirun ends. To keep a run going after you log out, start it under nohup, tmux or screen.
# Exit status: ffn-train's (0, 1, 2), 75 = stopped on request (with a checkpoint once training
# had begun), 130 = stopped at once by a second request, 2 = a usage error, 1 = the checkpoint
# directory is in use by another run.
set -uo pipefail
# The whole script is one function, parsed before it runs: bash 5.2 can lose a
# signal whose trap fires while it is still parsing a line with $(...) ("interrupt
# trap: unexpected EOF while looking for matching `)'"), so nothing is left to
# parse once the traps are set.
main() {
log() { echo "mpirun-hosts: $*" >&2; }

# Stop requests count from here on; each is handled once mpirun runs (on_signal).
stop="" forced=0 pid="" poller="" stamp="" ranks_at_stop=0
on_signal() {
  if [[ -z $pid ]]; then
    stop=${stop:-$1}
    return
  fi
  if [[ -z $stop ]]; then
    stop=$1
    log "SIG$1: asking every rank to checkpoint and stop (SIGUSR1 to mpirun)"
    forward_stop
  elif [[ $1 == USR1 || $1 == HUP ]] || ((forced)); then
    # A second SIGTERM would make Open MPI 4.1's mpirun crash (exit 139) during its kill grace.
    log "SIG$1 again: already stopping; waiting for mpirun to end"
  else
    forced=1
    force_stop "$1"
  fi
}
for s in INT TERM USR1 HUP; do trap "on_signal $s" "$s"; done
# A closed terminal or ssh pipe must not end the script (and with it the run's supervision).
trap '' PIPE
cleanup() {
  [[ -n $poller ]] && kill "$poller" 2>/dev/null
  [[ -n $stamp ]] && rm -f "$stamp"
  [[ -n $scratch ]] && rm -f "$scratch"
}
trap cleanup EXIT

# Every command this script runs before mpirun goes through `capture`, never $(...) or a plain
# foreground command: bash drops a SIGINT that lands while it waits for a foreground child which
# then exits normally (it takes the child to have handled it), so a Ctrl-C or `kill -INT` in that
# window would be lost and the run would train on. `wait` never drops one.
scratch=""
# make_temp VAR: VAR = a new empty file of this script's, made with builtins (noclobber opens it
# O_EXCL; mktemp would be a foreground child too).
make_temp() {
  local try _name
  for try in 1 2 3 4 5 6 7 8; do
    _name=${TMPDIR:-/tmp}/ffn-launch.$$.$RANDOM$RANDOM
    if (set -C; : >"$_name") 2>/dev/null; then
      printf -v "$1" '%s' "$_name"
      return 0
    fi
  done
  log "error: cannot create a file in ${TMPDIR:-/tmp}"
  exit 1
}
# run_to_scratch CMD...: CMD with its standard output in the file $scratch; returns its status.
run_to_scratch() {
  [[ -n $scratch ]] || make_temp scratch
  "$@" >"$scratch" &
  local child=$!
  # wait returns early when a trap runs (a stop request is then kept in $stop).
  while kill -0 "$child" 2>/dev/null; do wait "$child"; done
  wait "$child"
}
# capture VAR CMD...: VAR = CMD's standard output (trailing newlines dropped); returns CMD's status.
capture() {
  local -n _out=$1
  shift
  local rc=0
  run_to_scratch "$@" || rc=$?
  _out=""
  IFS= read -r -d '' _out <"$scratch"
  while [[ $_out == *$'\n' ]]; do _out=${_out%$'\n'}; done
  return "$rc"
}
capture here readlink -f -- "${BASH_SOURCE[0]}"
here=${here%/*}
usage() { sed -n '2,/^set -uo/p' "$here/mpirun-hosts.sh" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
# count NAME VALUE VAR [MIN]: VAR = VALUE when it is digits only and >= MIN (default 1), else exit 2.
# (Bash arithmetic on an unchecked value would run the command substitutions in it.)
count() {
  local v=$2
  if [[ ! $v =~ ^[0-9]{1,9}$ ]] || ((10#$v < ${4:-1})); then
    log "error: $1 must be a whole number >= ${4:-1}, not '$v'"
    exit 2
  fi
  printf -v "$3" '%d' "$((10#$v))"
}
# words VAR TEXT: VAR = the words of TEXT, split as xargs does (blanks and newlines separate;
# '...', "..." and \ quote), without running anything in it.
words() {
  local -n _w=$1
  _w=()
  [[ -n ${2//[[:space:]]/} ]] || return 0
  split_words() { printf '%s\n' "$1" | xargs printf '%s\0' && printf ok; }
  run_to_scratch split_words "$2"
  mapfile -d '' _w <"$scratch"
  [[ ${_w[-1]:-} == ok ]] || { log "error: cannot split '$2' into words (an unmatched quote?)"; exit 2; }
  unset '_w[-1]'
}

hostfile=${FFN_HOSTFILE:-}
per_node=${FFN_RANKS_PER_NODE:-}
np=${FFN_NP:-}
threads=${FFN_THREADS:-}
iface=${FFN_IFACE:-}
while (($#)); do
  case $1 in
    -f) hostfile=${2:?-f needs a file}; shift 2 ;;
    -N) per_node=${2:?-N needs a number}; shift 2 ;;
    -n) np=${2:?-n needs a number}; shift 2 ;;
    -t) threads=${2:?-t needs a number}; shift 2 ;;
    -i) iface=${2:?-i needs an interface or subnet}; shift 2 ;;
    -h | --help) usage ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[[ -z $per_node ]] || count "-N (FFN_RANKS_PER_NODE)" "$per_node" per_node
[[ -z $np ]] || count "-n (FFN_NP)" "$np" np
[[ -z $threads ]] || count "-t (FFN_THREADS)" "$threads" threads
[[ -z ${FFN_KILL_GRACE:-} ]] || count "FFN_KILL_GRACE" "$FFN_KILL_GRACE" FFN_KILL_GRACE 0
args=("$@")
((${#args[@]})) || { log "no ffn-train arguments (see $0 --help)"; exit 2; }
bin=${FFN_BIN:-$here/../build/ffn-train}
[[ -f $bin && -x $bin ]] || { log "ffn-train not found at $bin (build it, or set FFN_BIN)"; exit 2; }

arg_value() { # NAME [VAR]: VAR = the value of --NAME in args; status 1 when there is none
  local i _value
  for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
      "--$1") _value=${args[i + 1]:-} ;;
      "--$1="*) _value=${args[i]#*=} ;;
      *) continue ;;
    esac
    [[ -z ${2:-} ]] || printf -v "$2" '%s' "$_value"
    return 0
  done
  return 1
}
drop_arg() { # removes --NAME and its value from args
  local i out=()
  for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
      "--$1") ((i++)) ;;
      "--$1="*) ;;
      *) out+=("${args[i]}") ;;
    esac
  done
  args=("${out[@]}")
}
# latest_ckpt DIR VAR: VAR = the newest DIR/ckpt-<10 digits>.h5 (what ffn-train's --resume latest
# takes), DIR taken literally; empty when there is none.
latest_ckpt() {
  local f last=""
  for f in "$1"/ckpt-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9].h5; do
    [[ -f $f ]] && last=$f
  done
  printf -v "$2" '%s' "$last"
}
# Refuses (exit 1) while a live run holds DIR/ffn.lock (ffn-train's rank 0 keeps an flock on it).
refuse_if_locked() {
  local lock=$1/ffn.lock holder
  [[ -f $lock ]] || return 0
  run_to_scratch flock -n -E 75 "$lock" true 2>/dev/null
  (($? == 75)) || return 0
  lock_holder() { head -c 512 "$1" 2>/dev/null | head -n 1 | tr -cd '[:print:]'; }
  capture holder lock_holder "$lock"
  log "error: the checkpoint directory $1 is in use by another run (${holder:-holder unknown}): not starting a second copy into it"
  log "stop that run first (SIGUSR1 or SIGTERM to it, or its launcher: it checkpoints), then run this again to resume"
  exit 1
}

arg_value checkpoint-dir ckpt_dir || {
  ckpt_dir=${FFN_CKPT_DIR:-}
  [[ -n $ckpt_dir ]] && args+=(--checkpoint-dir "$ckpt_dir")
}
if [[ -n $ckpt_dir ]]; then
  refuse_if_locked "$ckpt_dir"
  if ! arg_value resume; then
    latest_ckpt "$ckpt_dir" latest
    if [[ -n $latest ]]; then
      drop_arg init-from
      drop_arg replace-head
      args+=(--resume latest)
      log "resuming from $latest"
    fi
  fi
else
  log "note: no --checkpoint-dir (or FFN_CKPT_DIR): a stop signal will save nothing"
fi
metrics=""
arg_value metrics metrics

cmd=("${FFN_MPIRUN:-mpirun}")
((EUID == 0)) && cmd+=(--allow-run-as-root)
if [[ -n $hostfile ]]; then
  [[ -f $hostfile && -r $hostfile ]] || { log "cannot read the hostfile $hostfile"; exit 2; }
  cmd+=(--hostfile "$hostfile")
  nodes=0
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] || ((nodes++))
  done <"$hostfile"
  [[ -z $np && -n $per_node ]] && np=$((per_node * nodes))
fi
[[ -n $np ]] && cmd+=(-np "$np")
map=""
[[ -n $per_node ]] && map="ppr:$per_node:node"
if [[ -n $threads ]]; then
  arg_value threads || args+=(--threads "$threads")
  export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
  cmd+=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
  if ((threads > 1)) && [[ ${FFN_BIND:-} != none ]]; then map="${map:-slot}:PE=$threads"; fi
fi
[[ -n $map ]] && cmd+=(--map-by "$map")
[[ ${FFN_BIND:-} == none ]] && cmd+=(--bind-to none)
[[ -n $iface ]] && cmd+=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
words extra "${FFN_MPIRUN_ARGS:-}"
cmd+=("${extra[@]}" "$bin" "${args[@]}")
# On SIGTERM mpirun waits this long, sends SIGTERM to the ranks, waits again and kills them; it
# also waits about twice this long before returning after a rank exits 75 (Open MPI's default: 1).
[[ -n ${FFN_KILL_GRACE:-} ]] && export OMPI_MCA_odls_base_sigkill_timeout=$FFN_KILL_GRACE

# SIGUSR1 ends a rank that has not reached ffn-train's main() (and mpirun drops it before the
# ranks exist), so a stop request waits until the ranks take it: the metrics file is (re)written
# after every rank set up its handler, and a local rank shows it in /proc. Ranks this machine
# cannot see are taken as ready START_GRACE seconds after mpirun started.
# The handlers that do this run no child process (see capture), so a second Ctrl-C cannot be lost.
start_grace=30
below=()
descendants() { # PID: below = every process below PID
  local f line p q
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    p=${line%% *}
    line=${line##*) } # after the command name, which may hold spaces
    line=${line#* }
    kids[${line%% *}]+=" $p"
  done
  local queue=("$1") i=0
  below=()
  while ((i < ${#queue[@]})); do
    p=${queue[i++]}
    for q in ${kids[$p]:-}; do queue+=("$q"); below+=("$q"); done
  done
}
# local_ranks: ranks = the ffn-train processes below mpirun on this machine (-ef: same file as
# $bin, which /proc/PID/exe leads to).
ranks=()
local_ranks() {
  local p
  ranks=()
  descendants "$pid"
  for p in "${below[@]}"; do
    [[ /proc/$p/exe -ef $bin ]] && ranks+=("$p")
  done
}
ranks_listen() {
  [[ -n $metrics && -f $metrics && $metrics -nt $stamp ]] && return 0
  local p key value seen=0
  local_ranks
  for p in "${ranks[@]}"; do
    seen=1
    while read -r key value; do
      # SigCgt: the caught signals as a hex mask; SIGUSR1 (10) is bit 9.
      [[ $key == SigCgt: && $value =~ ^[0-9a-f]+$ ]] && (((16#$value >> 9) & 1)) && return 0
    done <"/proc/$p/status" 2>/dev/null
  done
  ((!seen && SECONDS - t_start >= start_grace))
}
forward_stop() {
  local_ranks
  ranks_at_stop=${#ranks[@]}
  if ranks_listen; then
    kill -USR1 "$pid" 2>/dev/null
    return
  fi
  log "the ranks are still starting: SIGUSR1 goes to mpirun once they can take it"
  (
    trap - INT TERM USR1 HUP EXIT
    while kill -0 "$pid" 2>/dev/null; do
      if ranks_listen; then kill -USR1 "$pid" 2>/dev/null; exit 0; fi
      sleep 0.1
    done
  ) &
  poller=$!
}

# A second request: SIGKILL to the ranks this machine runs (mpirun then ends the others). SIGTERM
# to mpirun is the way only when no rank is local: Open MPI 4.1's mpirun crashes (exit 139) on a
# SIGTERM while it is already ending a job, and may leave its ranks behind.
force_stop() {
  local p key state rest live=()
  local_ranks
  for p in "${ranks[@]}"; do
    state=""
    while read -r key state rest; do [[ $key == State: ]] && break; state=""; done <"/proc/$p/status" 2>/dev/null
    [[ -n $state && $state != Z ]] && live+=("$p")
  done
  if ((${#live[@]} && ${#live[@]} < ranks_at_stop)); then
    # Some rank has already ended after its checkpoint: mpirun is taking the job down, and
    # killing the others now makes Open MPI 4.1's mpirun crash in its finalize (exit 139).
    log "SIG$1 again: the ranks are ending after the checkpoint; waiting for mpirun"
  elif ((${#live[@]})); then
    log "SIG$1 again: stopping at once (no new checkpoint): SIGKILL to the local ranks ${live[*]}"
    kill -KILL "${live[@]}" 2>/dev/null
  elif [[ -z $hostfile ]]; then # every rank ran here and has ended: mpirun is finishing
    log "SIG$1 again: the ranks have ended; waiting for mpirun"
  else
    log "SIG$1 again: stopping at once (no new checkpoint): SIGTERM to mpirun"
    kill -TERM "$pid" 2>/dev/null
  fi
}

if [[ -n $stop ]]; then
  log "SIG$stop before mpirun started: not starting (nothing to checkpoint); exit 75"
  exit 75
fi
make_temp stamp
log "${cmd[*]}"
t_start=$SECONDS
# mpirun runs in its own session, so a terminal's Ctrl-C or hangup reaches only this script
# (which turns it into a checkpointing stop) and not the local ranks directly.
setsid "${cmd[@]}" &
pid=$!
if [[ -n $stop ]]; then # a request between the check above and $!
  log "SIG$stop: asking every rank to checkpoint and stop (SIGUSR1 to mpirun)"
  forward_stop
fi
# wait returns early when a trap runs; mpirun's own status is kept and read once it is gone.
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; done
wait "$pid"
rc=$?
if ((forced)) && ((rc != 0 && rc != 75)); then
  latest_ckpt "${ckpt_dir:-/nonexistent}" latest
  log "mpirun stopped at once (its exit: $rc); newest checkpoint: ${latest:-none}"
  exit 130
fi
if ((rc == 75)); then
  log "stopped with a checkpoint in ${ckpt_dir:-(none)}; run the same command again to resume"
elif [[ -n $stop ]] && ((rc != 0)); then
  log "mpirun ended with exit $rc after the stop request"
fi
exit "$rc"
}
main "$@"
