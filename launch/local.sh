#!/usr/bin/env bash
# ffn-train on this machine with N ranks: launch/local.sh [-n N] [-t T] [--] FFN-TRAIN-ARGS...
#
#   launch/local.sh -n 4 --train data/fashion-mnist/train.h5 --epochs 5 --checkpoint-dir runs/fm
#
# -n N  ranks [FFN_NP; default: this machine's cores]. More ranks than cores adds
#       --oversubscribe; running as root adds --allow-run-as-root.
# -t T  BLAS threads per rank [FFN_THREADS; default: ffn-train's, cores / ranks]
# N and T are whole decimal numbers (digits only). The rest is launch/mpirun-hosts.sh without a
# hostfile: with --checkpoint-dir, running the same command again resumes from the newest
# checkpoint (and is refused while another run uses that directory); Ctrl-C, a hangup, or
# SIGUSR1/SIGTERM to this script checkpoints and stops (exit 75), a second Ctrl-C stops at once
# (exit 130).
set -euo pipefail
# The whole script is one function, parsed before it runs: bash 5.2 can lose a
# signal whose trap fires while it is still parsing a line with $(...) ("interrupt
# trap: unexpected EOF while looking for matching `)'"), so nothing is left to
# parse once the traps are set.
main() {
# A stop request before mpirun-hosts.sh takes over ends this script: nothing has started yet.
for s in INT TERM USR1 HUP; do
  trap "echo 'local.sh: SIG$s before mpirun started: not starting (nothing to checkpoint); exit 75' >&2; exit 75" "$s"
done
# No $(...) from here on: bash drops a SIGINT that lands while it waits for a foreground child
# (a command substitution too) that then exits normally. It reads a process substitution's output
# without such a wait.
read -r here < <(readlink -f -- "${BASH_SOURCE[0]}")
here=${here%/*}
np=${FFN_NP:-}
threads=${FFN_THREADS:-}
while (($#)); do
  case $1 in
    -n) np=${2:?-n needs a number}; shift 2 ;;
    -t) threads=${2:?-t needs a number}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$here/local.sh" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
for v in np threads; do
  if [[ -n ${!v} && ! ${!v} =~ ^[0-9]{1,9}$ || ${!v} =~ ^0+$ ]]; then
    env_name=FFN_THREADS
    [[ $v == np ]] && env_name=FFN_NP
    echo "local.sh: error: -${v:0:1} ($env_name) must be a whole number >= 1, not '${!v}'" >&2
    exit 2
  fi
done
read -r cores < <(nproc)
np=$((10#${np:-$cores}))
[[ -z $threads ]] || threads=$((10#$threads))
extra=${FFN_MPIRUN_ARGS:-}
if ((np * ${threads:-1} > cores)); then
  # Oversubscribed: let ranks share cores, without pinning them to one each.
  extra="--oversubscribe $extra"
  export FFN_BIND=none
  threads=${threads:-1}
fi
export FFN_MPIRUN_ARGS=$extra FFN_THREADS=$threads FFN_HOSTFILE="" FFN_RANKS_PER_NODE=""
exec "$here/mpirun-hosts.sh" -n "$np" -- "$@"
}
main "$@"
