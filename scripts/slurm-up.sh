#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine for the sweep tests (docs/sweeps.md): munge
# (its folders owned by `munge`), slurmctld and slurmd as root with SlurmUser=root,
# proctrack/pgid, task/none, select/cons_tres, the node line from `slurmd -C`, state and spool in
# a temporary folder, no accounting daemon. Installs Debian's slurm-wlm and munge when missing.
# Needs root. Idempotent: a cluster that already answers is left alone. Undo with slurm-down.sh.
set -euo pipefail

STATE="${GROKSCOPE_SLURM_DIR:-/tmp/grokscope-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by grokscope scripts/slurm-up.sh"

say() { echo "slurm-up: $*"; }
fail() { echo "slurm-up: $*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || fail "needs root (it starts munged, slurmctld and slurmd)"
if sinfo -h >/dev/null 2>&1 && [[ -n "$(sinfo -h -o %T 2>/dev/null)" ]]; then
    say "a cluster already answers: $(sinfo -h -o '%P %D %T' | tr '\n' ' ')"
    exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
fi
if [[ -f "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    fail "$CONF exists and was not written by this script; not touching it"
fi

# munge: key and folders owned by the munge user, daemon run as that user.
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
[[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || fail "munged does not answer"

# slurm.conf: one node (this machine, as slurmd -C describes it), one default partition.
host="$(hostname -s)"
node="$(slurmd -C | head -n 1)"
[[ "$node" == NodeName=* ]] || fail "slurmd -C did not describe this node: $node"
rm -rf "$STATE"
mkdir -p "$STATE/ctld" "$STATE/spool" /etc/slurm
cat > "$CONF" <<CONF
$MARK
ClusterName=grokscope
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MpiDefault=none
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

/usr/sbin/slurmctld -c
/usr/sbin/slurmd -c
for _ in $(seq 60); do
    state="$(sinfo -h -o %T 2>/dev/null || true)"
    [[ "$state" == idle* || "$state" == mixed* || "$state" == allocated* ]] && break
    sleep 0.5
done
state="$(sinfo -h -o %T 2>/dev/null || true)"
if [[ "$state" != idle* && "$state" != mixed* && "$state" != allocated* ]]; then
    tail -n 5 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
    fail "the node did not come up (state: ${state:-no answer}); logs in $STATE"
fi
say "up: $(sinfo -h -o '%P %D %T %C')  (state and logs in $STATE)"
