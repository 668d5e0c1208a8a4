#!/usr/bin/env bash
# Ember local set-up: installs the Debian packages Ember needs and starts a
# private containerd and a private redis-server for this checkout.
#
#   deploy/setup.sh install   install missing packages (idempotent)
#   deploy/setup.sh start     install, then start containerd + redis (idempotent)
#   deploy/setup.sh stop      stop what start started
#   deploy/setup.sh status    print what is running
#   deploy/setup.sh otelcol   build the OpenTelemetry Collector of deploy/otelcol
#                             (once per go.sum, cached) and link $EMBER_STATE/tools/otelcol
#   deploy/setup.sh weed      build SeaweedFS's weed (deploy/seaweedfs; once per go.sum,
#                             cached) and link $EMBER_STATE/tools/weed
#   deploy/setup.sh rie       build AWS's Lambda Runtime Interface Emulator (deploy/rie;
#                             once, cached) and link $EMBER_STATE/tools/aws-lambda-rie
#   deploy/setup.sh criu      build CRIU 4.1.1 with deploy/criu/sockets.patch (once,
#                             cached) and link $EMBER_STATE/tools/criu
#
# Everything lives under $EMBER_STATE (default: <repo>/.ember). start writes
# $EMBER_STATE/env with EMBER_REDIS and EMBER_CONTAINERD for the Makefile,
# the binaries and the tests.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${EMBER_STATE:-$repo/.ember}
redis_port=${EMBER_REDIS_PORT:-6390}
packages=(containerd runc redis-server busybox-static zip containernetworking-plugins nftables iproute2 e2fsprogs mount util-linux)

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
	if [ "$(id -u)" -ne 0 ]; then
		log "must run as root (containerd, cgroups and namespaces need it)"
		exit 1
	fi
}

install() {
	need_root
	local missing=()
	for p in "${packages[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		return 0
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

containerd_cfg() {
	cat <<CFG
version = 2
root = "$state/containerd/root"
state = "$state/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$state/containerd.sock"
[ttrpc]
  address = "$state/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"
CFG
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for <what> <command...>: up to 10 s
	local what=$1; shift
	for _ in $(seq 1 200); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.05
	done
	log "$what did not come up; see $state/*.log"
	exit 1
}

start() {
	need_root
	install
	mkdir -p "$state/containerd" "$state/redis"
	if ! alive "$state/containerd.pid"; then
		containerd_cfg >"$state/containerd.toml"
		rm -f "$state/containerd.sock"
		nohup containerd --config "$state/containerd.toml" >>"$state/containerd.log" 2>&1 &
		echo $! >"$state/containerd.pid"
		wait_for containerd test -S "$state/containerd.sock"
		log "containerd started (socket $state/containerd.sock)"
	fi
	if ! alive "$state/redis/redis.pid"; then
		# Persistence: the registry (tenants, functions, bindings) lives here.
		# AOF, fsync every second: a kill -9 of redis-server loses nothing
		# acknowledged (the writes are in the kernel); a host crash at most 1 s.
		redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --save '' --appendonly yes \
			--appendfsync everysec --dir "$state/redis" --pidfile "$state/redis/redis.pid" --logfile "$state/redis/redis.log"
		wait_for redis redis-cli -p "$redis_port" ping
		log "redis started (127.0.0.1:$redis_port)"
	fi
	cat >"$state/env" <<ENV
EMBER_STATE=$state
EMBER_REDIS=127.0.0.1:$redis_port
EMBER_CONTAINERD=$state/containerd.sock
ENV
}

stop() {
	if alive "$state/redis/redis.pid"; then
		redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$state/redis/redis.pid")"
		log "redis stopped"
	fi
	if alive "$state/containerd.pid"; then
		kill "$(cat "$state/containerd.pid")"
		log "containerd stopped"
	fi
	rm -f "$state/containerd.pid" "$state/redis/redis.pid" "$state/env"
}

# otelcol builds deploy/otelcol (a Collector distribution: otlp receiver,
# bearertokenauth, file exporter) into a cache keyed by its sources: about 2
# minutes the first time on 2 cores, nothing afterwards. $EMBER_TOOLS_CACHE
# (default ~/.cache/ember) outlives checkouts and `make clean`.
otelcol() {
	tool otelcol otelcol . "the OpenTelemetry Collector" main.go
}

# weed builds SeaweedFS (deploy/seaweedfs pins its version): the networked
# store of state resources shared by several hosts (docs/configuration.md).
# About 8-10 minutes the first time on 2 cores, nothing afterwards.
weed() {
	tool seaweedfs weed github.com/seaweedfs/seaweedfs/weed "SeaweedFS"
}

# rie builds AWS's Runtime Interface Emulator (deploy/rie pins its version):
# make bench's reference for a hot invoke of the same function.
rie() {
	tool rie aws-lambda-rie github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie \
		"AWS's Lambda Runtime Interface Emulator"
}

# criu builds CRIU, which checkpoints a function waiting for a call
# (hostagent/checkpoint.go, --criu): 4.1.1 from Debian's source (this
# kernel needs 4.1 or later; bookworm ships 3.17) with deploy/criu's patch,
# into $EMBER_TOOLS_CACHE. About a minute the first time (its build
# dependencies from apt, then 15 s of make on 2 cores), nothing afterwards.
criu() {
	local cache=${EMBER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}
	local key
	key=$(sha256sum "$repo/deploy/criu/sockets.patch" | cut -c1-16)
	local bin=$cache/criu-4.1.1-$key
	install libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev libnl-3-dev \
		libnet1-dev libcap-dev libbsd-dev libnftables-dev uuid-dev pkg-config make gcc curl xz-utils nftables
	if [ ! -x "$bin" ]; then
		log "building CRIU 4.1.1 into $bin"
		local tmp
		tmp=$(mktemp -d)
		curl -fsSL -o "$tmp/criu.tar.xz" http://deb.debian.org/debian/pool/main/c/criu/criu_4.1.1.orig.tar.xz
		echo "f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe  $tmp/criu.tar.xz" | sha256sum -c --quiet
		tar -C "$tmp" -xf "$tmp/criu.tar.xz"
		patch -s -d "$tmp/criu-4.1.1" -p1 <"$repo/deploy/criu/sockets.patch"
		make -s -C "$tmp/criu-4.1.1" -j"$(nproc)" criu >"$tmp/build.log" 2>&1 || { tail -20 "$tmp/build.log"; exit 1; }
		mkdir -p "$cache"
		cp "$tmp/criu-4.1.1/criu/criu" "$bin.tmp"
		mv "$bin.tmp" "$bin"
		rm -rf "$tmp"
	fi
	mkdir -p "$state/tools"
	ln -sfn "$bin" "$state/tools/criu"
}

# tool DIR NAME PACKAGE WHAT [FILES...] builds PACKAGE of the module in
# deploy/DIR into $EMBER_TOOLS_CACHE (default ~/.cache/ember, which outlives
# checkouts and `make clean`), keyed by the module's go.mod, go.sum and
# FILES, and links it at $EMBER_STATE/tools/NAME.
tool() {
	local dir=$repo/deploy/$1 name=$2 pkg=$3 what=$4
	shift 4
	local cache=${EMBER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}
	local key
	key=$(cd "$dir" && cat go.mod go.sum "$@" | sha256sum | cut -c1-16)
	local bin=$cache/$name-$key
	if [ ! -x "$bin" ]; then
		log "building $what (deploy/$(basename "$dir")) into $bin"
		mkdir -p "$cache"
		(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin.tmp" "$pkg")
		mv "$bin.tmp" "$bin"
	fi
	mkdir -p "$state/tools"
	ln -sfn "$bin" "$state/tools/$name"
}

status() {
	alive "$state/containerd.pid" && echo "containerd: running ($state/containerd.sock)" || echo "containerd: stopped"
	alive "$state/redis/redis.pid" && echo "redis: running (127.0.0.1:$redis_port)" || echo "redis: stopped"
}

case "${1:-start}" in
install) shift; install "$@" ;;
otelcol) otelcol ;;
weed) weed ;;
rie) rie ;;
criu) criu ;;
start) start ;;
stop) stop ;;
status) status ;;
*) log "usage: $0 install|start|stop|status|otelcol|weed|rie|criu"; exit 2 ;;
esac
