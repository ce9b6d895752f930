#!/usr/bin/env bash
# Stop the test cluster that scripts/slurm-up.sh started: only the daemons whose PIDs it recorded
# in $SLURM_STATE_DIR/pids (never by name), in reverse start order, SIGTERM then SIGKILL after a
# grace period. Removes the /etc/slurm/slurm.conf link if it points into the state dir.
# Idempotent: nothing recorded or nothing alive is not an error.
#
#   scripts/slurm-down.sh            # stop; keep the state dir (logs, database) for a restart
#   scripts/slurm-down.sh --purge    # stop and delete the state dir
set -euo pipefail

state=${SLURM_STATE_DIR:-/tmp/polyglot-slurm}
etc_conf=/etc/slurm/slurm.conf
purge=false
[ "${1:-}" = "--purge" ] && purge=true

log() { printf 'slurm-down: %s\n' "$*" >&2; }

# The recorded PID is only ours if that process still runs the program we started (PIDs are
# reused): compare /proc/PID/comm with the daemon's name. A zombie (exited, not yet reaped by
# an init that may never reap it) counts as stopped.
ours() {
    local name=$1 pid=$2
    [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] \
        && ! grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null
}

stop() {
    local name=$1 file="$state/pids/$1.pid" pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    if ours "$name" "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        # Up to 10 s to exit cleanly (slurmctld saves state, MariaDB flushes), then SIGKILL.
        for _ in $(seq 50); do ours "$name" "$pid" || break; sleep 0.2; done
        if ours "$name" "$pid"; then
            log "$name ($pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name ($pid)"
    fi
    rm -f "$file"
}

# Cancel what is still queued or running (every job on this private cluster came from its user),
# so no job processes outlive slurmd; give them a moment to end.
if [ -s "$state/pids/slurmctld.pid" ] && ours slurmctld "$(cat "$state/pids/slurmctld.pid")"; then
    export SLURM_CONF="$state/slurm.conf"
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086  # one job id per word
        timeout 10 scancel $jobs 2>/dev/null || true
        for _ in $(seq 25); do [ -z "$(timeout 5 squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    fi
fi

# slurmd first (it ends the jobs' steps), munged last (the others authenticate through it).
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    stop "$name"
done

if [ -L "$etc_conf" ] && [ "$(readlink "$etc_conf")" = "$state/slurm.conf" ]; then
    rm -f "$etc_conf"
fi
if $purge && [ -d "$state" ]; then
    rm -rf "$state"
    log "removed $state"
fi
