#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on localhost for tests and CI: munge, MariaDB + slurmdbd
# (accounting: without it `sacct` fails and the Snakemake plugin never sees jobs finish),
# slurmctld and slurmd, with one dummy GPU (gres) so GPU rules exercise `--gpus`.
#
#   sudo SLURM_STATE_DIR=/tmp/polyglot-slurm scripts/slurm-up.sh   # then scripts/slurm-down.sh
#
# Everything the cluster writes lives under $SLURM_STATE_DIR (configs, keys, databases, logs,
# one PID file per daemon in pids/) except one link: /etc/slurm/slurm.conf -> the state dir's
# config, because Debian's slurm clients (the `srun` Snakemake runs inside each job drops
# SLURM_CONF from its environment) only look there. An existing /etc/slurm/slurm.conf that is
# not that link is never touched: the script stops instead.
# Debian has no systemd here: the daemons are started by hand, in the foreground, detached with
# setsid, their output in logs/. Idempotent: if the daemons it recorded are alive and the node
# answers, it says so and exits 0. Needs root (slurmd launches jobs; MariaDB and munge run as
# root here); installs missing Debian packages with apt-get.
#
# Settings (environment):
#   SLURM_STATE_DIR   state directory                      [/tmp/polyglot-slurm]
#   SLURM_PORT_BASE   slurmctld port; slurmd, slurmdbd and MariaDB use the next three  [6817]
#   SLURM_CLUSTER     cluster name                         [polyglot]
#   SLURM_PARTITION   partition (the slurm profile names it) [main]
#   SLURM_ACCOUNT     account (the slurm profile names it)   [polyglot]
#   SLURM_NODE_CPUS   CPUs the node advertises (may exceed the real count) [max(4, nproc)]
#   SLURM_NODE_MEM_MB memory the node advertises (not enforced: no cgroups) [max(65536, real)]
#   SLURM_NODE_GPUS   dummy GPUs (device files under the state dir) [1]
#   SLURM_USERS       users given an association with the account [root and $SUDO_USER]
set -euo pipefail

state=${SLURM_STATE_DIR:-/tmp/polyglot-slurm}
port=${SLURM_PORT_BASE:-6817}
cluster=${SLURM_CLUSTER:-polyglot}
partition=${SLURM_PARTITION:-main}
account=${SLURM_ACCOUNT:-polyglot}
real_cpus=$(nproc)
cpus=${SLURM_NODE_CPUS:-$((real_cpus > 4 ? real_cpus : 4))}
real_mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
mem=${SLURM_NODE_MEM_MB:-$((real_mem > 65536 ? real_mem : 65536))}
gpus=${SLURM_NODE_GPUS:-1}
users=${SLURM_USERS:-root ${SUDO_USER:-}}
node=localhost
etc_conf=/etc/slurm/slurm.conf
start_ns=$(date +%s%N)

log() { printf 'slurm-up: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Poll `$@` every 0.2 s until it succeeds; give up when daemon $name has died or after $timeout
# seconds, and show the tail of its logs.
wait_for() {
    local name=$1 timeout=$2; shift 2
    local deadline=$((SECONDS + timeout)) why=""
    until "$@" >/dev/null 2>&1; do
        if ! alive "$name"; then why="$name exited"; fi
        if ((SECONDS >= deadline)); then why="timed out after ${timeout}s"; fi
        if [ -n "$why" ]; then
            log "$why waiting for: $*"
            tail -n 25 "$state/logs/$name".* >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

# Start a daemon detached (own session, no terminal, stdio to its log) and record its PID.
# The daemons run in the foreground (-D/-F), so $! is the daemon itself (setsid execs in place
# when it is not a process-group leader, which background jobs of a script are not).
launch() {
    local name=$1; shift
    setsid "$@" </dev/null >"$state/logs/$name.out" 2>&1 &
    echo $! >"$state/pids/$name.pid"
}

# Is the daemon we recorded still running? (A zombie, never reaped by this machine's init, is not.)
alive() {
    local pid
    pid=$(cat "$state/pids/$1.pid" 2>/dev/null) || return 1
    kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*zombie' "/proc/$pid/status" 2>/dev/null
}

node_idle() { [ "$(sinfo -h -n "$node" -o %t 2>/dev/null)" = idle ]; }

[ "$(id -u)" -eq 0 ] || die "run as root (e.g. sudo -E $0): slurmd must launch jobs as any user"

# --- Debian packages -------------------------------------------------------------------------
# slurm-wlm: slurmctld + slurmd + clients + basic plugins; slurmdbd and mariadb-server for
# accounting; munge for authentication. On Docker-style machines policy-rc.d keeps apt from
# starting their services; where it does start them they use the system paths and default ports,
# while ours use the state dir (and MariaDB a port of our own).
pkgs=(slurm-wlm slurmdbd munge mariadb-server)
missing=()
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Already up? -----------------------------------------------------------------------------
if alive munged && alive mariadbd && alive slurmdbd && alive slurmctld && alive slurmd \
        && node_idle; then
    log "already up (state $state)"
    exit 0
fi
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    alive "$name" && die "$name from an earlier start is still running: run scripts/slurm-down.sh"
done

if [ -L "$etc_conf" ] && [ ! -e "$etc_conf" ]; then
    log "removing the dangling link $etc_conf -> $(readlink "$etc_conf")"   # a purged state dir
    rm -f "$etc_conf"
fi
if [ -e "$etc_conf" ]; then
    [ "$(readlink "$etc_conf" || true)" = "$state/slurm.conf" ] \
        || die "$etc_conf exists and is not ours: this machine has its own SLURM; use that"
fi

# From here on, a failure stops whatever this run started (by the PIDs it recorded).
trap 'rc=$?; [ $rc -eq 0 ] || { log "failed; stopping what was started"; \
    SLURM_STATE_DIR="$state" bash "$(dirname "$0")/slurm-down.sh" || true; }; exit $rc' EXIT

# Others may enter (users' sbatch reaches the munge socket) but not list or write: munged refuses
# a key or socket under a directory that others can write.
mkdir -p "$state"/{pids,logs,munge,mysql,ctld,spool,dev}
chmod 0711 "$state" "$state/munge"
rm -f "$state"/pids/*.pid

# --- munge -----------------------------------------------------------------------------------
if [ ! -s "$state/munge/munge.key" ]; then
    dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$state/munge/munge.key"
fi
sock="$state/munge/munge.socket"
rm -f "$sock" "$sock.lock"
launch munged munged -F --force --key-file="$state/munge/munge.key" --socket="$sock" \
    --pid-file="$state/munge/munged.pid" --log-file="$state/logs/munged.log" \
    --seed-file="$state/munge/munged.seed"
wait_for munged 10 munge -n -S "$sock"

# --- MariaDB (the accounting database) -------------------------------------------------------
db_port=$((port + 3))
db_sock="$state/mysql.sock"
if [ ! -d "$state/mysql/data/mysql" ]; then
    mariadb-install-db --user=root --datadir="$state/mysql/data" --skip-test-db \
        --auth-root-authentication-method=socket >"$state/logs/mariadb-install.log" 2>&1 \
        || { tail -n 30 "$state/logs/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
fi
launch mariadbd mariadbd --no-defaults --user=root --datadir="$state/mysql/data" \
    --socket="$db_sock" --port="$db_port" --bind-address=127.0.0.1 \
    --pid-file="$state/mysql/mariadbd.pid" --log-error="$state/logs/mariadbd.log" \
    --innodb-buffer-pool-size=64M --skip-name-resolve
wait_for mariadbd 30 mariadb-admin --socket="$db_sock" -uroot ping
[ -s "$state/mysql/slurm.pass" ] || { head -c 18 /dev/urandom | base64 | tr -d '/+=' \
    >"$state/mysql/slurm.pass"; chmod 0600 "$state/mysql/slurm.pass"; }
db_pass=$(cat "$state/mysql/slurm.pass")
mariadb --socket="$db_sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# --- Configuration files ---------------------------------------------------------------------
# Shared by slurmctld/slurmd/clients; DESIGN.md section 4 says why each non-default line is here.
cat >"$state/slurm.conf" <<EOF
# Written by scripts/slurm-up.sh: a one-node test cluster. Regenerated on every start.
ClusterName=$cluster
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/ctld/slurmctld.pid
SlurmdPidFile=$state/spool/slurmd.pid
SlurmctldLogFile=$state/logs/slurmctld.log
SlurmdLogFile=$state/logs/slurmd.log
# No cgroups here: processes tracked through /proc, no task binding, no usage sampling.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
# Cores and memory are consumable; DefMemPerCPU keeps a job without --mem from taking the node.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
# The node may advertise more CPUs/memory than the machine has (a test node, not a real one).
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
GresTypes=gpu
# Accounting through slurmdbd; the job comment (the plugin's rule name + wildcards) is kept and
# GPU use appears in AllocTRES/ReqTRES; jobs need a valid account/association.
AccountingStorageType=accounting_storage/slurmdbd
# For slurmdbd connections the munge socket comes from here, not from AuthInfo.
AccountingStoragePass=$sock
AccountingStorageHost=$node
AccountingStoragePort=$((port + 2))
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN
PartitionName=$partition Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

# Dummy GPUs: character devices with NVIDIA's major number. Nothing opens them; slurmd only
# needs the files to exist to hand out gres/gpu and set CUDA_VISIBLE_DEVICES in jobs.
: >"$state/gres.conf"
for ((i = 0; i < gpus; i++)); do
    dev="$state/dev/nvidia$i"
    [ -e "$dev" ] || mknod "$dev" c 195 "$i" 2>/dev/null || touch "$dev"
    echo "NodeName=$node Name=gpu File=$dev" >>"$state/gres.conf"
done

cat >"$state/slurmdbd.conf" <<EOF
# Written by scripts/slurm-up.sh.
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=$node
DbdPort=$((port + 2))
SlurmUser=root
PidFile=$state/slurmdbd.pid
LogFile=$state/logs/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$db_port
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
EOF
chmod 0600 "$state/slurmdbd.conf"   # slurmdbd refuses a config others can read

mkdir -p "$(dirname "$etc_conf")"
ln -sfn "$state/slurm.conf" "$etc_conf"
# Daemons and clients read this; slurmdbd has no option for its config file and looks for
# slurmdbd.conf beside $SLURM_CONF.
export SLURM_CONF="$state/slurm.conf"

# --- slurmdbd, then the cluster/account/users, then slurmctld and slurmd -----------------------
launch slurmdbd slurmdbd -D
wait_for slurmdbd 30 sacctmgr -n list cluster
sacctmgr -i -Q add cluster "$cluster" >/dev/null 2>&1 || true
sacctmgr -i -Q add account "$account" Cluster="$cluster" Description="polyglot-sae tests" \
    Organization=polyglot >/dev/null 2>&1 || true
for user in $users; do
    sacctmgr -i -Q add user "$user" Account="$account" DefaultAccount="$account" \
        Cluster="$cluster" >/dev/null 2>&1 || true
done
sacctmgr -n -P list assoc cluster="$cluster" account="$account" user=root format=user \
    | grep -qx root || die "could not create the association root/$account on $cluster"

# -c: start with no jobs. A test cluster never resumes work, and jobs recovered from a cluster that
# was stopped hard (killed daemons, a rebooted machine) stay RUNNING on a node that no longer runs
# them, so the node never turns idle and this script would time out.
launch slurmctld slurmctld -D -c -i -f "$state/slurm.conf"
wait_for slurmctld 30 scontrol ping
launch slurmd slurmd -D -N "$node" -f "$state/slurm.conf"
wait_for slurmd 60 node_idle

log "up in $((($(date +%s%N) - start_ns) / 1000000)) ms:" \
    "cluster $cluster, partition $partition, account $account, node $node" \
    "(${cpus} CPUs, ${mem} MB, gpu:${gpus}); state $state"
