#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (for testing the submitit launcher and
# `pytest -m slurm`). Needs root. Debian/Ubuntu only (apt-get: slurm-wlm, slurmdbd, munge, mariadb-server).
# Job accounting is on (slurmdbd + MariaDB): submitit learns that a job failed or was cancelled
# only from `sacct`; without it a multirun waits forever for a job that died without a result.
#
#   scripts/slurm-local.sh start    # install if needed, configure, start munged/mariadbd/slurmdbd/slurmctld/slurmd, wait for idle
#   scripts/slurm-local.sh status   # sinfo + squeue; exit 0 if the cluster answers, 1 if not
#   scripts/slurm-local.sh stop     # stop the daemons this script started (by recorded PID)
#
# Environment:
#   SLURM_LOCAL_STATE      state dir with our pid files and daemon stdout (default /tmp/slurm-local)
#   SLURM_LOCAL_TIMEOUT    seconds to wait for the node to become idle (default 60)
#   SLURM_LOCAL_MEM_PCT    share of `free -m` total memory given to SLURM as RealMemory (default 80)
#   SLURM_LOCAL_ACCOUNT    accounting account created for root, for --account tests (default tests)
#
# Only processes whose PIDs this script recorded are ever signalled; nothing is killed by name.
set -euo pipefail

STATE_DIR="${SLURM_LOCAL_STATE:-/tmp/slurm-local}"
WAIT_S="${SLURM_LOCAL_TIMEOUT:-60}"
MEM_PCT="${SLURM_LOCAL_MEM_PCT:-80}"

SLURM_CONF=/etc/slurm/slurm.conf
SLURM_LOG_DIR=/var/log/slurm
CTLD_LOG="$SLURM_LOG_DIR/slurmctld.log"
SLURMD_LOG="$SLURM_LOG_DIR/slurmd.log"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_SYS_PIDFILE=/run/munge/munged.pid
SLURMDBD_CONF=/etc/slurm/slurmdbd.conf
SLURMDBD_LOG="$SLURM_LOG_DIR/slurmdbd.log"
MYSQL_DATADIR=/var/lib/mysql
MYSQL_SOCKET=/run/mysqld/mysqld.sock
CLUSTER_NAME=local
ACCOUNT="${SLURM_LOCAL_ACCOUNT:-tests}"

log() { printf '[slurm-local] %s\n' "$*"; }
warn() { printf '[slurm-local] WARNING: %s\n' "$*" >&2; }
die() { printf '[slurm-local] ERROR: %s\n' "$*" >&2; exit 1; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts system daemons)"
}

sbin() { # locate a daemon binary (sbin may not be on PATH for non-login shells)
    local name=$1 p
    for p in "/usr/sbin/$name" "/usr/bin/$name" "/usr/local/sbin/$name"; do
        [ -x "$p" ] && { echo "$p"; return 0; }
    done
    command -v "$name" 2>/dev/null || return 1
}

# --- pid bookkeeping ----------------------------------------------------------------------

pidfile() { echo "$STATE_DIR/$1.pid"; }

# Is the PID recorded for daemon $1 alive and still that daemon?
# Prints the PID on success.
our_pid() {
    local name=$1 f pid comm
    f=$(pidfile "$name")
    [ -s "$f" ] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [ -n "$pid" ] || return 1
    [ -r "/proc/$pid/comm" ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    [ "$comm" = "$name" ] || return 1
    echo "$pid"
}

# Is some process with this exact name running (not necessarily ours)? Read-only check.
any_running() {
    local name=$1 d
    for d in /proc/[0-9]*; do
        [ "$(cat "$d/comm" 2>/dev/null || true)" = "$name" ] && return 0
    done
    return 1
}

# Wait until a pid file (written by a daemon) holds a live pid of the named process.
wait_pidfile() {
    local file=$1 name=$2 secs=$3 i pid
    for ((i = 0; i < secs * 10; i++)); do
        if [ -s "$file" ]; then
            pid=$(tr -dc '0-9' <"$file" || true)
            if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ]; then
                echo "$pid"
                return 0
            fi
        fi
        sleep 0.1
    done
    return 1
}

# --- cluster facts -----------------------------------------------------------------------

host_short() { hostname -s; }

node_state() { # prints the node's state, e.g. idle, idle*, down*, drained, mixed ...
    sinfo -h -N -n "$(host_short)" -o %T 2>/dev/null | head -n1
}

show_logs() {
    local f
    for f in "$CTLD_LOG" "$SLURMD_LOG" "$SLURMDBD_LOG" "$STATE_DIR/slurmctld.out" "$STATE_DIR/slurmd.out" \
        "$STATE_DIR/slurmdbd.out" "$STATE_DIR/mariadbd.out" "$STATE_DIR/munged.out" /var/log/munge/munged.log; do
        if [ -s "$f" ]; then
            printf '\n----- tail -n 25 %s -----\n' "$f" >&2
            tail -n 25 "$f" >&2 || true
        fi
    done
}

# --- start steps -------------------------------------------------------------------------

PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)

install_packages() {
    local missing=()
    sbin slurmctld >/dev/null || missing+=(slurm-wlm)
    sbin slurmdbd >/dev/null || missing+=(slurmdbd)
    sbin munged >/dev/null || missing+=(munge)
    sbin mariadbd >/dev/null || missing+=(mariadb-server)
    if [ "${#missing[@]}" -eq 0 ]; then
        log "packages: ${PACKAGES[*]} already installed"
        return 0
    fi
    log "packages: installing ${PACKAGES[*]} (missing: ${missing[*]}) ..."
    export DEBIAN_FRONTEND=noninteractive
    local apt_log="$STATE_DIR/apt.log" policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
    # The packages' install scripts would start their daemons as system services, which this
    # script could neither track nor stop by pid: forbid that for the install, as Docker images do.
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    { apt-get update && apt-get install -y --no-install-recommends "${PACKAGES[@]}"; } >"$apt_log" 2>&1 || rc=$?
    [ "$own_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || { tail -n 30 "$apt_log" >&2; die "apt-get failed (full log: $apt_log)"; }
    local name
    for name in slurmctld slurmdbd munged mariadbd; do
        sbin "$name" >/dev/null || die "$name still missing after apt-get install ${PACKAGES[*]}"
    done
    log "packages: installed ($(sbin slurmctld) -V: $("$(sbin slurmctld)" -V 2>/dev/null || echo '?'))"
}

setup_munge() {
    id munge >/dev/null 2>&1 || die "user 'munge' does not exist (is the munge package installed?)"
    mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
    if [ ! -s "$MUNGE_KEY" ]; then
        log "munge: creating $MUNGE_KEY"
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
    chmod 700 /etc/munge
    chmod 400 "$MUNGE_KEY"
}

start_munged() {
    local pid
    if pid=$(our_pid munged); then
        log "munged: already running (ours, pid $pid)"
        return 0
    fi
    if any_running munged; then
        # Someone else's munged (e.g. a system service). Use it, but do not manage it.
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            log "munged: already running (not started by this script; leaving it alone)"
            rm -f "$(pidfile munged)"
            return 0
        fi
        die "a munged process is running but 'munge -n | unmunge' fails; stop it first"
    fi
    rm -f "$MUNGE_SYS_PIDFILE"
    log "munged: starting as user munge"
    runuser -u munge -- "$(sbin munged)" >"$STATE_DIR/munged.out" 2>&1 ||
        { show_logs; die "munged failed to start"; }
    # munged daemonizes and writes its own pid file; copy it into our state dir.
    pid=$(wait_pidfile "$MUNGE_SYS_PIDFILE" munged 10) ||
        { show_logs; die "munged did not write $MUNGE_SYS_PIDFILE"; }
    echo "$pid" >"$(pidfile munged)"
    munge -n | unmunge >/dev/null || { show_logs; die "munge credential round trip failed"; }
    log "munged: started (pid $pid)"
}

# --- accounting: MariaDB and slurmdbd ---------------------------------------------------

sql() { mariadb --protocol=socket --socket="$MYSQL_SOCKET" -u root -N -B -e "$1"; }

start_mariadb() {
    local pid i
    if pid=$(our_pid mariadbd); then
        log "mariadbd: already running (ours, pid $pid)"
        return 0
    fi
    if any_running mariadbd || any_running mysqld; then
        # A system MariaDB/MySQL: use it when root can reach it on the default socket, never manage it.
        sql 'SELECT 1' >/dev/null 2>&1 ||
            die "a MariaDB/MySQL server is running but root cannot reach it on $MYSQL_SOCKET; stop it first"
        rm -f "$(pidfile mariadbd)"
        log "mariadbd: already running (not started by this script; leaving it alone)"
        return 0
    fi
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    if [ ! -d "$MYSQL_DATADIR/mysql" ]; then
        log "mariadbd: initialising $MYSQL_DATADIR"
        mariadb-install-db --user=mysql --datadir="$MYSQL_DATADIR" >"$STATE_DIR/mariadb-install.out" 2>&1 ||
            { tail -n 20 "$STATE_DIR/mariadb-install.out" >&2; die "mariadb-install-db failed"; }
    fi
    log "mariadbd: starting (socket only, no TCP port)"
    # mariadbd stays in the foreground: run it in the background, detached from our stdio
    # (a caller capturing our output must not wait for the daemon), and record its pid.
    setsid "$(sbin mariadbd)" --user=mysql --datadir="$MYSQL_DATADIR" --socket="$MYSQL_SOCKET" \
        --pid-file=/run/mysqld/mysqld.pid --skip-networking \
        </dev/null >"$STATE_DIR/mariadbd.out" 2>&1 &
    pid=$!
    echo "$pid" >"$(pidfile mariadbd)"
    for ((i = 0; i < 300; i++)); do # 30 s
        sql 'SELECT 1' >/dev/null 2>&1 && break
        [ -d "/proc/$pid" ] || { show_logs; die "mariadbd exited during start"; }
        sleep 0.1
    done
    sql 'SELECT 1' >/dev/null 2>&1 || { show_logs; die "mariadbd did not answer on $MYSQL_SOCKET within 30s"; }
    our_pid mariadbd >/dev/null || die "pid $pid is not a mariadbd process"
    log "mariadbd: started (pid $pid)"
}

render_slurmdbd_conf() {
    local h addr=""
    h=$(host_short)
    getent hosts "$h" >/dev/null 2>&1 || addr="DbdAddr=127.0.0.1"
    cat <<EOF
# Written by scripts/slurm-local.sh: job accounting for the single-node cluster on $h.
AuthType=auth/munge
DbdHost=$h
$addr
SlurmUser=root
PidFile=$STATE_DIR/slurmdbd.pid
LogFile=$SLURMDBD_LOG
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
}

write_slurmdbd_conf() {
    mkdir -p /etc/slurm "$SLURM_LOG_DIR"
    local tmp
    tmp=$(mktemp)
    render_slurmdbd_conf >"$tmp"
    # slurmdbd refuses a config that others can read (it may hold a database password).
    install -m 0600 -o root -g root "$tmp" "$SLURMDBD_CONF"
    rm -f "$tmp"
}

wait_slurmdbd() {
    local i
    for ((i = 0; i < 300; i++)); do # 30 s
        sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    show_logs
    die "slurmdbd did not answer sacctmgr within 30s"
}

register_cluster() {
    if sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
        log "accounting: cluster '$CLUSTER_NAME' already registered"
        return 0
    fi
    sacctmgr -i add cluster "$CLUSTER_NAME" >/dev/null || die "sacctmgr add cluster $CLUSTER_NAME failed"
    log "accounting: registered cluster '$CLUSTER_NAME'"
}

# An account that root may charge (sbatch --account=$ACCOUNT, hydra.launcher.account=$ACCOUNT).
register_account() {
    if ! sacctmgr -n -P list account format=account 2>/dev/null | grep -qx "$ACCOUNT"; then
        sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER_NAME" Description="slurm-local tests" \
            Organization=local >/dev/null || die "sacctmgr add account $ACCOUNT failed"
    fi
    if ! sacctmgr -n -P list association format=account,user 2>/dev/null | grep -qx "$ACCOUNT|root"; then
        sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER_NAME" >/dev/null ||
            die "sacctmgr add user root Account=$ACCOUNT failed"
    fi
    log "accounting: account '$ACCOUNT' (user root)"
}

render_slurm_conf() {
    local h cpus mem_total real_mem defmem addr_ctl="" addr_node="" acct_host
    h=$(host_short)
    acct_host=$h
    cpus=$(nproc)
    mem_total=$(free -m | awk '/^Mem:/ {print $2}')
    real_mem=$((mem_total * MEM_PCT / 100))
    [ "$real_mem" -ge 1 ] || real_mem=1
    # Without a default, a job that does not ask for memory is given the whole node and
    # jobs cannot share it; give each CPU an equal share instead.
    defmem=$((real_mem / cpus))
    [ "$defmem" -ge 1 ] || defmem=1
    # If the short hostname does not resolve, tell slurm to use the loopback address.
    if ! getent hosts "$h" >/dev/null 2>&1; then
        addr_ctl="(127.0.0.1)"
        addr_node=" NodeAddr=127.0.0.1"
        acct_host=127.0.0.1
    fi
    cat <<EOF
# Written by scripts/slurm-local.sh: a single-node cluster on $h. Edits are overwritten on start.
ClusterName=$CLUSTER_NAME
SlurmctldHost=${h}${addr_ctl}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=${acct_host}
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
MinJobAge=300
NodeName=$h CPUs=$cpus RealMemory=$real_mem State=UNKNOWN${addr_node}
PartitionName=debug Nodes=$h Default=YES MaxTime=INFINITE State=UP
EOF
}

write_slurm_conf() {
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$SLURM_LOG_DIR"
    local tmp
    tmp=$(mktemp)
    render_slurm_conf >"$tmp"
    if [ -f "$SLURM_CONF" ] && cmp -s "$tmp" "$SLURM_CONF"; then
        rm -f "$tmp"
        log "slurm.conf: $SLURM_CONF unchanged"
        CONF_CHANGED=0
    else
        install -m 0644 "$tmp" "$SLURM_CONF"
        rm -f "$tmp"
        log "slurm.conf: wrote $SLURM_CONF ($(grep '^NodeName=' "$SLURM_CONF"))"
        CONF_CHANGED=1
    fi
}

# start_slurm_daemon NAME: slurmctld or slurmd. The daemon forks and writes its pid file
# (SlurmctldPidFile/SlurmdPidFile point into $STATE_DIR), which is how we track it.
start_slurm_daemon() {
    local name=$1 pid
    if pid=$(our_pid "$name"); then
        if [ "$CONF_CHANGED" = 1 ] && [ "$name" != slurmdbd ]; then
            # Some settings (accounting, node CPUs) need a restart; `scontrol reconfigure` is not enough.
            log "$name: slurm.conf changed, restarting it (pid $pid)"
            stop_one "$name"
        else
            log "$name: already running (ours, pid $pid)"
            return 0
        fi
    fi
    rm -f "$(pidfile "$name")"
    log "$name: starting"
    "$(sbin "$name")" >"$STATE_DIR/$name.out" 2>&1 || { show_logs; die "$name failed to start"; }
    pid=$(wait_pidfile "$(pidfile "$name")" "$name" 15) ||
        { show_logs; die "$name did not come up (no live pid in $(pidfile "$name"))"; }
    log "$name: started (pid $pid)"
}

wait_idle() {
    local h state="" deadline next_resume=0
    h=$(host_short)
    deadline=$((SECONDS + WAIT_S))
    log "waiting up to ${WAIT_S}s for node $h to be idle ..."
    while [ "$SECONDS" -lt "$deadline" ]; do
        state=$(node_state || true)
        case "$state" in
        idle | mixed | allocated | completing)
            log "node $h is $state"
            return 0
            ;;
        down* | drain* | fail*)
            # Left down/drained by an earlier run (ReturnToService only revives nodes that were
            # down for not responding): resume it, at most every 10 s.
            if [ "$SECONDS" -ge "$next_resume" ]; then
                log "node $h is $state; running 'scontrol update nodename=$h state=resume'"
                scontrol update nodename="$h" state=resume 2>/dev/null || true
                next_resume=$((SECONDS + 10))
            fi
            ;;
        esac
        sleep 1
    done
    show_logs
    sinfo -N -l >&2 2>/dev/null || true
    sinfo -R >&2 2>/dev/null || true
    die "node $h did not become idle within ${WAIT_S}s (last state: '${state:-none}'); logs above; the daemons are left running for inspection, '$0 stop' stops them"
}

# Refuse to touch slurm.conf under slurm daemons that this script (with this state dir) did not start.
check_foreign_slurm() {
    local name
    for name in slurmctld slurmd slurmdbd; do
        if ! our_pid "$name" >/dev/null && any_running "$name"; then
            die "a $name process is running that was not started with state dir $STATE_DIR (no live pid in $(pidfile "$name")); stop it first (or set SLURM_LOCAL_STATE to the dir it was started with)"
        fi
    done
}

cmd_start() {
    need_root
    local t0=$SECONDS
    mkdir -p "$STATE_DIR"
    check_foreign_slurm
    install_packages
    setup_munge
    start_munged
    start_mariadb
    write_slurmdbd_conf
    CONF_CHANGED=0
    write_slurm_conf # before slurmdbd: sacctmgr reads AccountingStorageType from slurm.conf
    start_slurm_daemon slurmdbd
    wait_slurmdbd
    register_cluster
    register_account
    start_slurm_daemon slurmctld
    start_slurm_daemon slurmd
    wait_idle
    log "cluster up in $((SECONDS - t0))s; partition 'debug' is the default"
    sinfo
}

# --- stop / status -----------------------------------------------------------------------

stop_one() {
    local name=$1 pid i
    if ! pid=$(our_pid "$name"); then
        if [ -e "$(pidfile "$name")" ]; then
            log "$name: recorded pid is not running; removing stale pid file"
            rm -f "$(pidfile "$name")"
        else
            log "$name: no pid recorded in $STATE_DIR; nothing to stop"
        fi
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid" || die "cannot signal $name (pid $pid); run as root"
    for ((i = 0; i < 300; i++)); do # 30 s
        [ -d "/proc/$pid" ] || break
        [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ] || break
        sleep 0.1
    done
    if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" = "$name" ]; then
        warn "$name (pid $pid) did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$(pidfile "$name")"
    log "$name: stopped"
}

cmd_stop() {
    stop_one slurmd
    stop_one slurmctld
    stop_one slurmdbd
    stop_one mariadbd
    stop_one munged
}

cmd_status() {
    local name pid up=1
    for name in munged mariadbd slurmdbd slurmctld slurmd; do
        if pid=$(our_pid "$name"); then
            log "$name: running (pid $pid)"
        elif any_running "$name"; then
            log "$name: running (not started by this script)"
        else
            log "$name: not running"
        fi
    done
    if command -v sinfo >/dev/null 2>&1 && sinfo -h >/dev/null 2>&1; then
        sinfo
        echo
        squeue
        up=0
    else
        log "cluster: not running (sinfo cannot reach slurmctld)"
    fi
    return "$up"
}

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
