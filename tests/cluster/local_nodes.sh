#!/usr/bin/env bash
# Runs COMMAND with OpenMPI's mpirun set up to launch onto several *real* OpenMPI nodes that all
# live on this machine: one orted daemon per node name, each in its own UTS namespace (its own
# host name), so MPI_Comm_split_type(SHARED), the shared-memory transport and the host names
# split the ranks by node as on a cluster, and traffic between nodes goes over TCP (loopback).
# No ssh: local_node_agent.sh is the rsh agent. COMMAND calls mpirun as usual (-np N).
#   local_nodes.sh NODE:SLOTS[,NODE:SLOTS...] COMMAND [ARGS...]
# Ranks are mapped by slot (NODE's SLOTS ranks in a row) unless the environment says otherwise
# (OMPI_MCA_rmaps_base_mapping_policy=node: round robin over the nodes).
# Exits 77 (ctest: skipped) where no UTS namespace can be made (a container without
# CAP_SYS_ADMIN and without user namespaces).
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: local_nodes.sh NODE:SLOTS[,NODE:SLOTS...] COMMAND [ARGS...]" >&2; exit 2; }
nodes="$1"
shift
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if unshare --uts true 2>/dev/null; then
  export CMAF_LOCAL_NODE_UNSHARE="unshare --uts"
elif unshare --user --map-root-user --uts true 2>/dev/null; then
  export CMAF_LOCAL_NODE_UNSHARE="unshare --user --map-root-user --uts"
else
  echo "SKIP: cannot make a UTS namespace here (unshare --uts, also in a user namespace, failed);" \
       "the local-nodes tests need one per simulated host" >&2
  exit 77
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
IFS=',' read -r -a entries <<<"${nodes}"
for entry in "${entries[@]}"; do
  [[ "${entry}" =~ ^[a-z][a-z0-9-]*:[1-9][0-9]*$ ]] \
    || { echo "local_nodes.sh: node '${entry}' in '${nodes}': expected NAME:SLOTS (NAME lower-case)" >&2
         exit 2; }
  echo "${entry%%:*} slots=${entry##*:}" >>"${work}/hostfile"
done
export OMPI_MCA_orte_default_hostfile="${work}/hostfile"
export OMPI_MCA_plm_rsh_agent="${here}/local_node_agent.sh"
# The daemons and ranks reach each other over loopback (every node is this machine).
export OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_tcp_if_include=lo
# Not exec: the trap removes the host file afterwards.
"$@"
