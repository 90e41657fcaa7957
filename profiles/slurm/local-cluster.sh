#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for trying profiles/slurm (Debian: slurm-wlm, munge).
# Usage: local-cluster.sh start|stop|status   (as root; state under $SLURM_SCRATCH, default /tmp/bioscan-slurm)
# start exits 3, changing nothing, when SLURM daemons are running already.
# stop ends only the daemons start started (munged too, unless it was already running) and puts back what start
# changed (a slurm.conf that was there before, the /etc/hosts line). Jobs left from an earlier start are dropped.
set -euo pipefail
SCRATCH=${SLURM_SCRATCH:-/tmp/bioscan-slurm}
CONF=/etc/slurm/slurm.conf
HOST=$(hostname -s)
MARK="# bioscan-rebuild local cluster"

start() {
  command -v slurmctld >/dev/null || { echo "install first: apt-get install -y slurm-wlm munge" >&2; exit 1; }
  command -v pgrep >/dev/null || { echo "install first: apt-get install -y procps" >&2; exit 1; }
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    echo "SLURM daemons are running already (another cluster, or an earlier start: run stop first)" >&2
    exit 3  # nothing changed: a caller's clean-up must not stop the cluster it found
  fi
  mkdir -p "$SCRATCH"/{state,spool,log} /etc/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge
  if ! getent hosts "$HOST" >/dev/null; then
    # a last line without its newline would take ours onto it (and stop would then remove both)
    if [ -s /etc/hosts ] && [ -n "$(tail -c1 /etc/hosts)" ]; then echo >> /etc/hosts; fi
    echo "127.0.1.1 $HOST $MARK" >> /etc/hosts
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    su -s /bin/sh munge -c munged
    touch "$SCRATCH/munged.started"  # ours: stop ends it
  fi
  local cpus mem
  cpus=$(nproc)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$((mem * 9 / 10))
  # someone's own slurm.conf: kept aside, and put back by stop
  if [ -f "$CONF" ] && ! grep -qxF "$MARK" "$CONF"; then cp -p "$CONF" "$CONF.before-bioscan"; fi
  cat > "$CONF" <<CONFIG
$MARK
ClusterName=bioscan
SlurmctldHost=$HOST
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
SlurmctldLogFile=$SCRATCH/log/slurmctld.log
SlurmdLogFile=$SCRATCH/log/slurmd.log
SlurmUser=root
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONFIG
  slurmctld -c  # a clean start: jobs an earlier, killed run left in the state folder do not come back
  for _ in $(seq 30); do scontrol ping >/dev/null 2>&1 && break; sleep 1; done
  slurmd
  for _ in $(seq 30); do sinfo -h -o %t 2>/dev/null | grep -q idle && break; sleep 1; done
  sinfo -h -o %t | grep -q idle || scontrol update NodeName="$HOST" State=RESUME
  sinfo
}

stop() {
  # Compute daemon first, then the controller; only the PIDs this script started.
  for pidfile in "$SCRATCH/slurmd.pid" "$SCRATCH/slurmctld.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  for _ in $(seq 20); do  # until they are gone, so that a start right after finds none running
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break
    sleep 0.5
  done
  if [ -f "$SCRATCH/munged.started" ]; then
    su -s /bin/sh munge -c "munged --stop" >/dev/null 2>&1 || true
    rm -f "$SCRATCH/munged.started"
  fi
  # A slurm.conf pointing at a stopped controller slows every snakemake start: move ours away, put back the one
  # that was there before.
  if [ -f "$CONF" ] && grep -qxF "$MARK" "$CONF"; then mv "$CONF" "$CONF.stopped"; fi
  if [ -f "$CONF.before-bioscan" ]; then mv "$CONF.before-bioscan" "$CONF"; fi
  # the hosts line start added (rewritten in place: /etc/hosts may be a mount point, which cannot be replaced;
  # read whole before it is written, so a failure cannot leave it empty)
  if grep -qF "$MARK" /etc/hosts; then
    kept=$(grep -vF "$MARK" /etc/hosts || true)
    printf '%s\n' "$kept" > /etc/hosts
  fi
  echo stopped
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
