#!/bin/sh
# OpenMPI's rsh agent for local_nodes.sh: called as "local_node_agent.sh [OPTIONS] HOST COMMAND",
# it runs COMMAND (an orted daemon) on this machine in a new UTS namespace whose host name is
# HOST, so the daemon and the ranks it starts see themselves on node HOST.
while [ $# -gt 0 ]; do
  case "$1" in
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "local_node_agent.sh: expected HOST COMMAND, got: $*" >&2; exit 2; }
host="$1"
shift
# COMMAND is a shell command line, as ssh would hand it to the remote shell (mpirun called by
# its absolute path sends "PATH=... ; export PATH ; ... orted ...").
# shellcheck disable=SC2086  # CMAF_LOCAL_NODE_UNSHARE is a command line set by local_nodes.sh
exec ${CMAF_LOCAL_NODE_UNSHARE:-unshare --uts} /bin/sh -c "hostname '${host}' && $*"
