#!/usr/bin/env bash
# ffn-train on this machine with N ranks: launch/local.sh [-n N] [-t T] [--] FFN-TRAIN-ARGS...
#
#   launch/local.sh -n 4 --train data/fashion-mnist/train.h5 --epochs 5 --checkpoint-dir runs/fm
#
# -n N  ranks [FFN_NP; default: this machine's cores]. More ranks than cores adds
#       --oversubscribe; running as root adds --allow-run-as-root.
# -t T  BLAS threads per rank [FFN_THREADS; default: ffn-train's, cores / ranks]
# The rest is launch/mpirun-hosts.sh without a hostfile: with --checkpoint-dir, running the same
# command again resumes from the newest checkpoint; Ctrl-C (or SIGUSR1/SIGTERM to this script)
# checkpoints and stops (exit 75), a second Ctrl-C stops at once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
np=${FFN_NP:-}
threads=${FFN_THREADS:-}
while (($#)); do
  case $1 in
    -n) np=${2:?-n needs a number}; shift 2 ;;
    -t) threads=${2:?-t needs a number}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
cores=$(nproc)
np=${np:-$cores}
extra=${FFN_MPIRUN_ARGS:-}
if ((np * ${threads:-1} > cores)); then
  # Oversubscribed: let ranks share cores, without pinning them to one each.
  extra="--oversubscribe $extra"
  export FFN_BIND=none
  threads=${threads:-1}
fi
export FFN_MPIRUN_ARGS=$extra FFN_THREADS=$threads FFN_HOSTFILE="" FFN_RANKS_PER_NODE=""
exec "$here/mpirun-hosts.sh" -n "$np" -- "$@"
