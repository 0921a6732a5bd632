#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, bound to 127.0.0.1, for the tests that submit real
# Slurm jobs (tests/test_slurm.py; .ci/run starts and stops it) and for trying hydra/launcher=slurm by hand. Debian's
# slurm-wlm (22.05 on bookworm) and munge. As root (or through sudo).
#
#   scripts/slurm.sh start     install slurm-wlm and munge if missing, write the config, start the daemons
#   scripts/slurm.sh stop      stop the daemons this script started (munged, slurmctld, slurmd)
#   scripts/slurm.sh status    sinfo, or say that the cluster is down (exit 1)
#
# Idempotent: `start` on a running cluster only checks it. The config is written to
# /etc/slurm/slurm.conf (where sbatch, srun and submitit look) unless a slurm.conf that this script
# did not write is there already: a real cluster's configuration is never touched.
# The node: NodeName=localhost NodeAddr=127.0.0.1, every CPU of the machine, its memory less 1 GiB;
# one partition `debug` (the default). No accounting database: sacct is unavailable, and Zoo's
# Slurm pool follows its jobs with squeue (hydra_plugins/zoo_sweepers/pools.py).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by zoo scripts/slurm.sh"
RUN=/run/zoo-slurm
LOGS=/var/log/slurm
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
        || ! command -v sbatch >/dev/null; then
        echo "slurm.sh: installing slurm-wlm and munge (apt-get install)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
}

write_config() {
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        echo "slurm.sh: $CONF exists and was not written by this script: using it as it is"
        return
    fi
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
    as_root mkdir -p /etc/slurm "$LOGS" /var/spool/slurmctld /var/spool/slurmd "$RUN"
    as_root tee "$CONF" >/dev/null <<EOF
$MARK
ClusterName=zoo
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

start_munge() {
    if as_root test -S /run/munge/munge.socket.2 && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    if ! as_root test -s /etc/munge/munge.key; then
        as_root dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    as_root chown munge:munge /etc/munge/munge.key
    as_root chmod 400 /etc/munge/munge.key
    as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
    as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge
    as_root runuser -u munge -- /usr/sbin/munged
    as_root touch "$RUN/munged.started"
}

running() {  # is the daemon of this pid file alive?
    as_root test -f "$1" && as_root kill -0 "$(as_root cat "$1")" 2>/dev/null
}

start() {
    install
    write_config
    as_root mkdir -p "$RUN"
    start_munge
    running "$RUN/slurmctld.pid" || as_root /usr/sbin/slurmctld
    running "$RUN/slurmd.pid" || as_root /usr/sbin/slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "slurm.sh: one-node cluster up on 127.0.0.1: $(sinfo -h -o '%P %D %c CPUs %m MiB %T' | head -n 1)"
            return
        fi
        # a node left DOWN by an earlier run (e.g. an unclean stop) is brought back
        scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm.sh: the cluster did not come up; see $LOGS/slurmctld.log and $LOGS/slurmd.log" >&2
    sinfo >&2 || true
    exit 1
}

stop_pid() {  # stop the daemon of pid file $1, waiting for it to go
    local file=$1 pid
    as_root test -f "$file" || return 0
    pid=$(as_root cat "$file")
    if as_root kill -0 "$pid" 2>/dev/null; then
        as_root kill -TERM "$pid" || true
        for _ in $(seq 30); do as_root kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        as_root kill -0 "$pid" 2>/dev/null && as_root kill -KILL "$pid" || true
    fi
    as_root rm -f "$file"
}

stop() {
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
    stop_pid "$RUN/slurmd.pid"
    stop_pid "$RUN/slurmctld.pid"
    if as_root test -f "$RUN/munged.started"; then  # munged only if this script started it
        stop_pid /run/munge/munged.pid
        as_root rm -f "$RUN/munged.started"
    fi
    echo "slurm.sh: stopped"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) sinfo 2>/dev/null || { echo "slurm.sh: the cluster is down" >&2; exit 1; } ;;
    *) echo "usage: scripts/slurm.sh start|stop|status" >&2; exit 2 ;;
esac
