#!/usr/bin/env bash
# Starts a throw-away redis-server on a free loopback port and prints the port on stdout.
#
# Installs Debian's `redis-server` package with apt-get when the binary is missing. The server
# runs without persistence, bound to 127.0.0.1, and exits by itself when the process whose pid
# is given as the first argument (default: the caller's parent) goes away, so tests never leave
# servers behind. Exit status non-zero (and a reason on stderr) when no server could be started.
# With REDIS_PASSWORD set, the server requires that password (`requirepass`).
set -euo pipefail

owner_pid="${1:-$PPID}"

if ! command -v redis-server >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ensure-redis: redis-server missing and apt-get unavailable" >&2
        exit 1
    fi
    sudo_cmd=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo_cmd="sudo -n"; else
            echo "ensure-redis: redis-server missing and not root (no sudo)" >&2
            exit 1
        fi
    fi
    echo "ensure-redis: installing redis-server with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get install -y -q redis-server >&2 \
        || { $sudo_cmd apt-get update -q >&2 && $sudo_cmd apt-get install -y -q redis-server >&2; } \
        || { echo "ensure-redis: apt-get install redis-server failed" >&2; exit 1; }
fi

# A free port: let the kernel choose one, then hand it to redis (a small race is acceptable for
# tests; we retry a few times if the bind fails).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

workdir="$(mktemp -d -t hookway-redis.XXXXXX)"
auth=()
if [ -n "${REDIS_PASSWORD:-}" ]; then
    auth=(--requirepass "$REDIS_PASSWORD")
    export REDISCLI_AUTH="$REDIS_PASSWORD"
fi
for _attempt in 1 2 3 4 5; do
    port="$(free_port)"
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --dir "$workdir" --daemonize yes --pidfile "$workdir/redis.pid" \
        --logfile "$workdir/redis.log" "${auth[@]}" >&2 || continue
    for _wait in $(seq 1 50); do
        if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
            server_pid="$(cat "$workdir/redis.pid")"
            # Reaper, in its own session so that killing the caller's process group does not
            # take it down: stops this server once the owner goes away.
            setsid bash -c '
                while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
                kill "$2" 2>/dev/null || true
                rm -rf "$3"
            ' reaper "$owner_pid" "$server_pid" "$workdir" >/dev/null 2>&1 </dev/null &
            echo "$port"
            exit 0
        fi
        sleep 0.1
    done
    if [ -f "$workdir/redis.pid" ]; then kill "$(cat "$workdir/redis.pid")" 2>/dev/null || true; fi
done
echo "ensure-redis: could not start redis-server (see $workdir/redis.log)" >&2
exit 1
