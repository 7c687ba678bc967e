# Two network namespaces joined by a veth pair: two "nodes" on one machine, for
# tests/e2e_netns.sh and launch/bench-netns.sh (sourced, not run). Needs root and iproute2.
#
#   netns_pair_up NS_A NS_B VETH_A VETH_B NET   # NET.1 in NS_A, NET.2 in NS_B (a /24), links up
#   netns_pair_down NS_A NS_B VETH_A            # kills what runs inside, removes both and the pair
#   netns_pair_rsh FILE NET NS_A NS_B           # writes mpirun's "ssh" (--mca plm_rsh_agent FILE)
#
# netns_pair_up stops at the first step that fails (status 1; ip's message on stderr).

netns_pair_up() {
  local a=$1 b=$2 va=$3 vb=$4 net=$5
  ip netns add "$a" && ip netns add "$b" && ip link add "$va" type veth peer name "$vb" &&
    ip link set "$va" netns "$a" && ip link set "$vb" netns "$b" &&
    ip -n "$a" addr add "$net.1/24" dev "$va" && ip -n "$b" addr add "$net.2/24" dev "$vb" &&
    ip -n "$a" link set lo up && ip -n "$b" link set lo up &&
    ip -n "$a" link set "$va" up && ip -n "$b" link set "$vb" up
}

netns_pair_down() {
  local ns p
  # Processes still inside the namespaces (a failed run) go first, then the namespaces.
  for ns in "$1" "$2"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  ip link del "$3" 2>/dev/null
  return 0
}

# mpirun's "ssh" for the pair: the host (NET.1 or NET.2) names a namespace, and
# each namespace's processes run on their own core (mpirun binds every rank to
# core 0 there: each daemon thinks it owns the machine).
netns_pair_rsh() {
  local file=$1 net=$2 a=$3 b=$4
  cat >"$file" <<AGENT
#!/bin/sh
while [ "\${1#-}" != "\$1" ]; do shift; done
host=\$1; shift
case \$host in
  $net.1) ns=$a core=0 ;;
  $net.2) ns=$b core=$(($(nproc) > 1 ? 1 : 0)) ;;
  *) exit 255 ;;
esac
exec ip netns exec "\$ns" taskset -c \$core /bin/sh -c "\$*"
AGENT
  chmod +x "$file"
}
