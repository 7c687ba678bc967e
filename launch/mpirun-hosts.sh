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
# Everything after the options (or after --) goes to ffn-train.
# More environment: FFN_BIN (ffn-train, default build/ffn-train next to this script),
# FFN_MPIRUN (mpirun), FFN_MPIRUN_ARGS (extra mpirun arguments, split on spaces, e.g.
# "--mca plm_rsh_agent ssh -p 2222"), FFN_CKPT_DIR (adds --checkpoint-dir when the arguments
# have none), FFN_KILL_GRACE (seconds mpirun waits before it escalates to SIGKILL; Open MPI's
# default is 1).
#
# Resuming: when the checkpoint directory (--checkpoint-dir, or FFN_CKPT_DIR) already holds a
# checkpoint and the arguments have no --resume, --resume latest is added (and --init-from /
# --replace-head dropped): run the same command again to continue. The directory must be on a
# filesystem every machine sees.
# Stopping: SIGUSR1, SIGTERM or Ctrl-C to this script sends SIGUSR1 to mpirun, which forwards it
# to every rank on every machine: each finishes its step, rank 0 writes a checkpoint, exit 75.
# A second Ctrl-C or SIGTERM stops mpirun at once (SIGTERM to mpirun).
# Exit status: ffn-train's (0, 1, 2, or 75 = stopped with a checkpoint).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }

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
args=("$@")
((${#args[@]})) || { echo "mpirun-hosts: no ffn-train arguments (see $0 --help)" >&2; exit 2; }
bin=${FFN_BIN:-$here/../build/ffn-train}
[[ -x $bin ]] || { echo "mpirun-hosts: ffn-train not found at $bin (build it, or set FFN_BIN)" >&2; exit 2; }
log() { echo "mpirun-hosts: $*" >&2; }

arg_value() { # the value of --NAME in args, or status 1
  local i
  for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
      "--$1") echo "${args[i + 1]:-}"; return 0 ;;
      "--$1="*) echo "${args[i]#*=}"; return 0 ;;
    esac
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

ckpt_dir=$(arg_value checkpoint-dir) || {
  ckpt_dir=${FFN_CKPT_DIR:-}
  [[ -n $ckpt_dir ]] && args+=(--checkpoint-dir "$ckpt_dir")
}
if [[ -n $ckpt_dir ]] && ! arg_value resume >/dev/null; then
  latest=$(compgen -G "$ckpt_dir/ckpt-*.h5" | LC_ALL=C sort | tail -n 1)
  if [[ -n $latest ]]; then
    drop_arg init-from
    drop_arg replace-head
    args+=(--resume latest)
    log "resuming from $latest"
  fi
elif [[ -z $ckpt_dir ]]; then
  log "note: no --checkpoint-dir (or FFN_CKPT_DIR): a stop signal will save nothing"
fi

cmd=("${FFN_MPIRUN:-mpirun}")
[[ $(id -u) -eq 0 ]] && cmd+=(--allow-run-as-root)
if [[ -n $hostfile ]]; then
  [[ -r $hostfile ]] || { echo "mpirun-hosts: cannot read the hostfile $hostfile" >&2; exit 2; }
  cmd+=(--hostfile "$hostfile")
  nodes=$(grep -cvE '^[[:space:]]*(#|$)' "$hostfile")
  [[ -z $np && -n $per_node ]] && np=$((per_node * nodes))
fi
[[ -n $np ]] && cmd+=(-np "$np")
map=""
[[ -n $per_node ]] && map="ppr:$per_node:node"
if [[ -n $threads ]]; then
  arg_value threads >/dev/null || args+=(--threads "$threads")
  export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
  cmd+=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
  if ((threads > 1)) && [[ ${FFN_BIND:-} != none ]]; then map="${map:-slot}:PE=$threads"; fi
fi
[[ -n $map ]] && cmd+=(--map-by "$map")
[[ ${FFN_BIND:-} == none ]] && cmd+=(--bind-to none)
[[ -n $iface ]] && cmd+=(--mca btl_tcp_if_include "$iface" --mca oob_tcp_if_include "$iface")
read -r -a extra <<<"${FFN_MPIRUN_ARGS:-}"
cmd+=("${extra[@]}" "$bin" "${args[@]}")
# On SIGTERM mpirun waits this long, sends SIGTERM to the ranks, waits again and kills them; it
# also waits about twice this long before returning after a rank exits 75 (Open MPI's default: 1).
[[ -n ${FFN_KILL_GRACE:-} ]] && export OMPI_MCA_odls_base_sigkill_timeout=$FFN_KILL_GRACE

pid=""
stopping=0
on_signal() {
  if ((stopping)) && [[ $1 != USR1 ]]; then
    log "SIG$1 again: terminating mpirun"
    kill -TERM "$pid" 2>/dev/null
    return
  fi
  stopping=1
  log "SIG$1: asking every rank to checkpoint and stop (SIGUSR1 to mpirun)"
  [[ -n $pid ]] && kill -USR1 "$pid" 2>/dev/null
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

log "${cmd[*]}"
# mpirun runs in its own session, so a terminal's Ctrl-C reaches only this script (which turns it
# into a checkpointing stop) and not the local ranks directly.
setsid "${cmd[@]}" &
pid=$!
((stopping)) && kill -USR1 "$pid" 2>/dev/null
while :; do
  wait "$pid"
  rc=$?
  if ((rc > 128)) && kill -0 "$pid" 2>/dev/null; then continue; fi # a trap interrupted wait
  break
done
if ((rc == 75)); then
  log "stopped with a checkpoint in ${ckpt_dir:-(none)}; run the same command again to resume"
elif ((stopping && rc != 0)); then
  log "mpirun ended with exit $rc after the stop request"
fi
exit "$rc"
