#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests (no systemd needed):
#   scripts/slurm-cluster.sh start DIR    install slurm-wlm and munge if missing, write the
#                                         configuration, key, state, spool and logs under DIR, start
#                                         munged, slurmctld and slurmd, wait until the node is idle
#                                         and check that `srun true` runs
#   scripts/slurm-cluster.sh stop DIR     stop the daemons whose pid files DIR holds, and wait for them
#   scripts/slurm-cluster.sh status DIR   say which of them run, and show sinfo
# Everything lives under DIR, munge's key and socket too, so a munged already on the machine is left
# alone. Slurm commands find the cluster through /etc/slurm/slurm.conf, a link to DIR/slurm.conf
# made by `start` and removed by `stop`: commands run inside jobs must find it at Slurm's default
# path, since Snakemake's job step drops SLURM_* variables, SLURM_CONF too. A machine with a
# slurm.conf of its own there is refused.
set -euo pipefail

PARTITION=spahgc
DAEMONS=(slurmd slurmctld munged) # in stopping order

say() { printf 'slurm-cluster: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

[ $# -eq 2 ] || die "usage: $0 start|stop|status DIR"
action=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
conf="$dir/slurm.conf"
DEFAULT_CONF=/etc/slurm/slurm.conf

pid_file() { echo "$dir/run/$1.pid"; }

# The pid recorded for daemon $1, when that process still runs and is that daemon (a pid file
# left by an earlier boot may name an unrelated process now).
running_pid() {
  local pid
  pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}

all_running() {
  local d
  for d in "${DAEMONS[@]}"; do running_pid "$d" >/dev/null || return 1; done
}

# Waits until command "$@" succeeds, up to $1 seconds.
wait_for() {
  local seconds=$1
  shift
  for _ in $(seq $((seconds * 10))); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

exited() { [ ! -d "/proc/$1" ]; }

stop() {
  local d pid
  for d in "${DAEMONS[@]}"; do
    if pid=$(running_pid "$d"); then
      say "stopping $d (pid $pid)"
      as_root kill "$pid"
      if ! wait_for 10 exited "$pid"; then
        say "$d did not exit in 10 s: killing it"
        as_root kill -KILL "$pid"
      fi
    fi
    as_root rm -f "$(pid_file "$d")"
  done
  if [ "$(readlink "$DEFAULT_CONF")" = "$conf" ]; then
    as_root rm "$DEFAULT_CONF"
  fi
}

write_config() {
  local host node cpus mem
  host=$(hostname -s)
  node=$(slurmd -C | head -n 1)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  as_root mkdir -p "$dir/run" "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  # munged runs as munge and writes its pid file beside the others; it wants a socket directory
  # that everyone may enter and only it may write.
  as_root chown munge:munge "$dir/run" "$dir/munge"
  as_root chmod 0755 "$dir/run" "$dir/munge"
  if ! as_root test -f "$dir/munge/munge.key"; then
    as_root runuser -u munge -- sh -c "umask 077; head -c 1024 /dev/urandom > '$dir/munge/munge.key'"
    as_root chmod 0400 "$dir/munge/munge.key"
  fi
  # Without accounting, job states come from squeue: MinJobAge keeps finished jobs visible to it
  # for 10 minutes, well past Snakemake's polling interval. DefMemPerCPU keeps a job that names no
  # memory from taking the node's whole memory.
  as_root tee "$conf" >/dev/null <<CONF
ClusterName=spahgc-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
MailProg=/bin/true
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$(pid_file slurmctld)
SlurmdPidFile=$(pid_file slurmd)
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$((mem * 9 / 10)) State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  as_root mkdir -p "$(dirname "$DEFAULT_CONF")"
  as_root ln -sfn "$conf" "$DEFAULT_CONF"
}

node_idle() { [ "$(sinfo -h -N -p "$PARTITION" -o %t 2>/dev/null)" = idle ]; }

start() {
  if all_running; then
    say "already running ($conf)"
    return
  fi
  if [ -e "$DEFAULT_CONF" ] && [ ! -L "$DEFAULT_CONF" ]; then
    die "$DEFAULT_CONF is this machine's own Slurm configuration: not replacing it"
  fi
  stop # whatever part of an earlier cluster still runs
  bash "$(dirname "$0")/apt-install.sh" slurm-wlm munge
  write_config
  as_root runuser -u munge -- munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$(pid_file munged)" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
  as_root slurmctld
  as_root slurmd -N "$(hostname -s)"
  wait_for 30 node_idle || die "node not idle after 30 s: $(sinfo -N 2>&1); see $dir/log"
  timeout 60 srun -p "$PARTITION" -N 1 -t 1 true || die "srun true failed; see $dir/log"
  say "running: partition $PARTITION, pids $(running_pid munged) (munged) $(running_pid slurmctld) (slurmctld)" \
    "$(running_pid slurmd) (slurmd), configuration $DEFAULT_CONF -> $conf"
}

status() {
  local d pid state=0
  for d in "${DAEMONS[@]}"; do
    if pid=$(running_pid "$d"); then say "$d running (pid $pid)"; else say "$d not running"; state=1; fi
  done
  [ $state -ne 0 ] || sinfo
  return $state
}

case $action in
  start) start ;;
  stop) stop; say "stopped" ;;
  status) status ;;
  *) die "unknown action '$action': start, stop or status" ;;
esac
