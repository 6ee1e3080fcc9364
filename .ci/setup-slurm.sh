#!/usr/bin/env bash
# Install and start a real single-node Slurm (Debian 12 packages) for the launcher tests.
#
# Why this shape: CI runs as root in a container whose PID 1 is not systemd and whose
# cgroup tree is not ours to manage, so the daemons are started directly and every
# plugin that would need cgroups or systemd is replaced by its plain-process twin
# (proctrack/linuxproc, task/none, jobacct_gather/none). The node line comes from
# `slurmd -C`, so the node matches whatever machine CI lands on.
#
# Idempotent: run it twice and the second run only checks that the node is idle
# (it rewrites the config and restarts the daemons only when the config changed).
set -euo pipefail

log() { echo "[setup-slurm] $*"; }
t0=$(date +%s)

if [ "$(id -u)" != 0 ]; then
    echo "[setup-slurm] must run as root" >&2
    exit 1
fi

# --- packages -------------------------------------------------------------
pkgs=(munge slurmctld slurmd slurm-client)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
    apt-get update -qq
    # policy-rc.d stops the postinst scripts from trying to start services (no systemd here).
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

# --- munge ----------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 1 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null
fi

# --- slurm.conf -----------------------------------------------------------
host=$(hostname -s)
if ! getent hosts "$host" >/dev/null; then
    echo "127.0.0.1 $host" >> /etc/hosts
fi
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
# `slurmd -C` prints the node's real shape; keep the NodeName..RealMemory line, drop UpTime.
node_line=$(slurmd -C | grep '^NodeName=' | sed -E 's/ *UpTime=.*$//')
# Leave the OS some memory so the node never drains for "Low RealMemory".
mem=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$node_line")
if [ -n "$mem" ]; then
    node_line=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((mem * 9 / 10))/" <<<"$node_line")
fi

conf=$(cat <<EOF
# Written by .ci/setup-slurm.sh: a single-node cluster for sonatarun's launcher tests.
ClusterName=sonatarun
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No systemd, no cgroup delegation in a container: plain-process tracking, affinity binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=pmi2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
# Jobs may requeue themselves (preemption-safe launcher templates rely on it).
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
SlurmdTimeout=300
SlurmctldTimeout=120
${node_line} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
)

changed=0
if [ ! -f /etc/slurm/slurm.conf ] || [ "$(cat /etc/slurm/slurm.conf)" != "$conf" ]; then
    log "writing /etc/slurm/slurm.conf"
    printf '%s\n' "$conf" > /etc/slurm/slurm.conf
    changed=1
fi

# --- daemons --------------------------------------------------------------
# Alive only if the pid file names a running process of that daemon (a pid left by a killed daemon
# may since belong to something else).
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$1" .pid)" ]
}
stop_pidfile() {
    if pid_alive "$1"; then
        kill "$(cat "$1")" 2>/dev/null || true
        for _ in $(seq 1 50); do pid_alive "$1" || break; sleep 0.1; done
    fi
}
if [ "$changed" = 1 ]; then
    stop_pidfile /run/slurm/slurmd.pid
    stop_pidfile /run/slurm/slurmctld.pid
fi
if ! pid_alive /run/slurm/slurmctld.pid; then
    log "starting slurmctld"
    /usr/sbin/slurmctld
fi
for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
if ! pid_alive /run/slurm/slurmd.pid; then
    log "starting slurmd"
    /usr/sbin/slurmd
fi

# --- wait for the node ----------------------------------------------------
state=""
for _ in $(seq 1 150); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|fail*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.2
done
if [ "$state" != idle ] && [ "$state" != mixed ] && [ "$state" != allocated ]; then
    echo "[setup-slurm] node did not come up (state: '${state}')" >&2
    sinfo -N -l >&2 || true
    tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    exit 1
fi
log "node ${host} is ${state} ($(( $(date +%s) - t0 )) s)"
sinfo
