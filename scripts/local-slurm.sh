#!/usr/bin/env bash
# A real one-node Slurm on this machine, for the Slurm tests and for trying the templates:
#
#   scripts/local-slurm.sh start [DIR]   write DIR/slurm.conf (this node's CPUs and memory,
#                                        select/cons_tres, proctrack/linuxproc), a munge key,
#                                        start munged, slurmctld and slurmd, wait until the node
#                                        is idle; prints the SLURM_CONF line to export
#   scripts/local-slurm.sh stop [DIR]    stop the daemons by their pid files
#   scripts/local-slurm.sh env [DIR]     print "export SLURM_CONF=..." for the clients
#
# CMAF_SLURM_GPUS=N (default 0) gives the node N stand-in GPUs (device nodes aliasing /dev/null),
# so the GPU template can be submitted and scheduled on a machine without GPUs.
# CMAF_SLURM_NODES=N (default 1): N Slurm nodes on this machine, cmaf-node1..N, one slurmd each
# (slurmd -N), each in a UTS and a mount namespace of its own, so a job step on node i sees host
# name cmaf-nodei (OpenMPI then sees N nodes: MPI_Comm_split_type, its transports) and its own
# TmpFS (where Slurm's PMIx plugin keeps per-step folders of the same name on every node). Each
# node claims all CPUs of the machine and 1/N of its memory; the file system is shared, as on a
# cluster. Every job launched with srun --mpi=pmix -N 2 then runs as on two machines.
# DIR defaults to /tmp/cmaf-slurm. Needs root (Debian's slurmctld, slurmd, slurm-client, munge:
# scripts/setup.sh installs them). Everything lives under DIR: a second instance with another
# DIR on other ports is possible by setting CMAF_SLURM_PORT (default 6817; slurmd uses +1).
set -euo pipefail
action="${1:-}"
dir="${2:-${CMAF_SLURM_DIR:-/tmp/cmaf-slurm}}"
port="${CMAF_SLURM_PORT:-6817}"
node="$(hostname -s)"
nodes="${CMAF_SLURM_NODES:-1}"
[[ "${nodes}" =~ ^[1-9][0-9]*$ ]] || { echo "local-slurm: CMAF_SLURM_NODES=${nodes}: expected a positive integer" >&2; exit 1; }
# The Slurm node names: this host alone, or cmaf-node1..N.
if ((nodes == 1)); then node_names=("${node}"); else mapfile -t node_names < <(seq -f "cmaf-node%g" 1 "${nodes}"); fi

die() { echo "local-slurm: $*" >&2; exit 1; }

stop_pid() {  # stop_pid FILE NAME
  local file="$1" name="$2"
  [[ -f "${file}" ]] || return 0
  local pid
  pid="$(cat "${file}")"
  if [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null; then
    kill "${pid}" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pid}" 2>/dev/null || true
  fi
  rm -f "${file}"
  echo "local-slurm: stopped ${name}"
}

write_config() {
  local cpus mem_mb gres_node=""
    # CMAF_SLURM_GPUS=N declares N stand-in GPUs: enough for Slurm to accept and schedule the
  # GPU template's requests (and set CUDA_VISIBLE_DEVICES); the job itself finds no CUDA device.
  local gpus="${CMAF_SLURM_GPUS:-0}"
  local suffix=""  # several slurmd: each its own spool, pid and log file (%n: the node name)
  ((nodes == 1)) || suffix="-%n"
  ((gpus > 0)) && gres_node=" Gres=gpu:${gpus}"
  cpus="$(nproc)"
  mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  mkdir -p "${dir}/state" "${dir}/munge"
  cat > "${dir}/slurm.conf" <<CONF
# Written by scripts/local-slurm.sh: one node, everything under ${dir}.
ClusterName=cmaf-local
SlurmctldHost=${node}
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${port}
SlurmdPort=$((port + 1))
AuthType=auth/munge
# cred_expire: a requeued job may only start after its old credential expired (default 120 s).
AuthInfo=socket=${dir}/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool${suffix}
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd${suffix}.pid
SlurmctldLogFile=${dir}/slurmctld.log
SlurmdLogFile=${dir}/slurmd${suffix}.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=600
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
  if ((nodes == 1)); then
    echo "NodeName=${node} CPUs=${cpus} RealMemory=${mem_mb}${gres_node} State=UNKNOWN" >> "${dir}/slurm.conf"
    mkdir -p "${dir}/spool"
  else
    # Every node is this machine: its own slurmd port, reached on loopback.
    echo "TmpFS=${dir}/node-tmp" >> "${dir}/slurm.conf"
    local i=0
    for name in "${node_names[@]}"; do
      i=$((i + 1))
      echo "NodeName=${name} NodeHostname=${name} NodeAddr=127.0.0.1 Port=$((port + i)) CPUs=${cpus}" \
           "RealMemory=$((mem_mb / nodes))${gres_node} State=UNKNOWN" >> "${dir}/slurm.conf"
      mkdir -p "${dir}/spool-${name}" "${dir}/node-tmp-${name}"
    done
    mkdir -p "${dir}/node-tmp"
  fi
  if ((gpus > 0)); then
    # Slurm drops GPUs without device files: character devices with /dev/null's numbers stand in.
    for ((g = 0; g < gpus; g++)); do
      rm -f "${dir}/gpu${g}"
      mknod "${dir}/gpu${g}" c 1 3 || die "cannot create the stand-in GPU device ${dir}/gpu${g} (a nodev file system?)"
    done
    sed -i "1a GresTypes=gpu" "${dir}/slurm.conf"
    echo "Name=gpu File=${dir}/gpu[0-$((gpus - 1))]" > "${dir}/gres.conf"
  else
    rm -f "${dir}/gres.conf"
  fi
}

start_munge() {
  # munged insists: the key private to munge, the socket's folder open to every user.
  mkdir -p "${dir}/munge-key"
  if [[ ! -f "${dir}/munge-key/munge.key" ]]; then
    dd if=/dev/urandom of="${dir}/munge-key/munge.key" bs=1024 count=1 status=none
  fi
  chown -R munge:munge "${dir}/munge" "${dir}/munge-key"
  chmod 755 "${dir}" "${dir}/munge"
  chmod 700 "${dir}/munge-key"
  chmod 400 "${dir}/munge-key/munge.key"
  runuser -u munge -- /usr/sbin/munged --key-file="${dir}/munge-key/munge.key" \
    --socket="${dir}/munge/munge.socket" --pid-file="${dir}/munge/munged.pid" \
    --log-file="${dir}/munge/munged.log" --seed-file="${dir}/munge/munged.seed"
}

case "${action}" in
  start)
    [[ "$(id -u)" == 0 ]] || die "needs root (Slurm runs as SlurmUser=root here)"
    command -v slurmctld > /dev/null || die "slurmctld not installed (scripts/setup.sh installs it)"
    if [[ -f "${dir}/slurmctld.pid" ]] && kill -0 "$(cat "${dir}/slurmctld.pid")" 2>/dev/null; then
      die "already running under ${dir} (stop it first)"
    fi
    write_config
    start_munge
    export SLURM_CONF="${dir}/slurm.conf"
    /usr/sbin/slurmctld -f "${dir}/slurm.conf" -c  # -c: no jobs from an earlier instance
    if ((nodes == 1)); then
      /usr/sbin/slurmd -f "${dir}/slurm.conf"
    else
      for name in "${node_names[@]}"; do
        # Its own host name, and its own folder at TmpFS (a bind mount only it sees).
        unshare --mount --uts --propagation private /bin/sh -c "hostname '${name}' &&
          mount --bind '${dir}/node-tmp-${name}' '${dir}/node-tmp' &&
          exec /usr/sbin/slurmd -f '${dir}/slurm.conf' -N '${name}'" \
          || die "cannot start slurmd for ${name} in its own namespaces (unshare --mount --uts)"
      done
    fi
    for name in "${node_names[@]}"; do
      for _ in $(seq 300); do
        state="$(sinfo -h -n "${name}" -o %T 2>/dev/null || true)"
        [[ "${state}" == idle* ]] && break
        sleep 0.2
      done
      [[ "${state:-}" == idle* ]] || {
        tail -20 "${dir}/slurmctld.log" "${dir}"/slurmd*.log >&2 || true
        die "node ${name} not idle after 60 s (state '${state:-none}'); logs above"
      }
    done
    echo "local-slurm: ${nodes} node(s) idle (${node_names[*]}; $(nproc) CPUs each); export SLURM_CONF=${dir}/slurm.conf"
    ;;
  stop)
    for file in "${dir}"/slurmd*.pid; do
      [[ -e "${file}" ]] && stop_pid "${file}" "$(basename "${file}" .pid)"
    done
    stop_pid "${dir}/slurmctld.pid" slurmctld
    stop_pid "${dir}/munge/munged.pid" munged
    ;;
  env)
    echo "export SLURM_CONF=${dir}/slurm.conf"
    ;;
  *)
    die "usage: local-slurm.sh start|stop|env [DIR]"
    ;;
esac
