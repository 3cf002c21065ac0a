#!/usr/bin/env bash
# Stops the one-node cluster of slurm-up.sh: cancels its jobs, stops slurmctld, slurmd and munged,
# removes the state folder and the slurm.conf it wrote. Leaves the Debian packages installed.
set -uo pipefail

STATE="${GROKSCOPE_SLURM_DIR:-/tmp/grokscope-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by grokscope scripts/slurm-up.sh"

stop_pidfile() {
    local file="$1"
    [[ -s "$file" ]] || return 0
    local pid
    pid="$(cat "$file")"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

if [[ -f "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    echo "slurm-down: $CONF was not written by slurm-up.sh; not touching this cluster" >&2
    exit 1
fi
scancel --user=root >/dev/null 2>&1 || true
stop_pidfile "$STATE/slurmd.pid"
stop_pidfile "$STATE/slurmctld.pid"
stop_pidfile /run/munge/munged.pid
rm -rf "$STATE"
[[ -f "$CONF" ]] && rm -f "$CONF"
echo "slurm-down: stopped"
