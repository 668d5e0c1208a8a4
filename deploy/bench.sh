#!/usr/bin/env bash
# `make bench`: Ember's benchmarks on this machine, against real Redis,
# containerd and the embedded Kafka-protocol broker, each figure next to a
# baseline measured in the same run (these machines are noisy: compare
# ratios, not absolute numbers across runs).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

run() { # run <title> <go test args...>
	local title=$1; shift
	printf '\n\033[1m== %s\033[0m\n$ go test %s\n' "$title" "$*"
	go test "$@" | tee /tmp/ember-bench.$$ | grep -E '^(BENCH|Benchmark|ok|FAIL|---)' || true
	grep -q '^FAIL' /tmp/ember-bench.$$ && { cat /tmp/ember-bench.$$; rm -f /tmp/ember-bench.$$; exit 1; }
	rm -f /tmp/ember-bench.$$
}

# The previous main, built in a scratch worktree, for the comparisons that
# say what a change cost (BenchmarkVsBase). EMBER_BASE_REF: the main this
# work started from.
base_ref=${EMBER_BASE_REF:-dc9fa55}
base_dir=$(mktemp -d)
trap 'git worktree remove --force "$base_dir/src" >/dev/null 2>&1 || true; rm -rf "$base_dir"' EXIT
if git worktree add --detach "$base_dir/src" "$base_ref" >/dev/null 2>&1; then
	(cd "$base_dir/src" && CGO_ENABLED=0 go build -trimpath -o "$base_dir/bin/ember-init" ./cmd/ember-init &&
		{ [ ! -d cmd/ember-shim ] || CGO_ENABLED=0 go build -trimpath -o "$base_dir/bin/ember-shim" ./cmd/ember-shim; } &&
		go build -o "$base_dir/bin/emberd" ./cmd/emberd)
	export EMBER_BASE_BIN=$base_dir/bin
	printf 'previous main: %s (built in %s)\n' "$(git rev-parse --short "$base_ref")" "$base_dir/bin"
else
	printf 'previous main %s not found: BenchmarkVsBase is skipped\n' "$base_ref"
fi

run "whole system: the per-stage budget of a warm invocation, latency, start kinds vs a container per invocation, throughput, cost vs the previous main" \
	-run '^$' -bench . -benchtime 1x -timeout 30m ./test/e2e
run "warm path pieces: Runtime API round trip in ember-init (vs AWS's RIE at 1.2 ms p50 here, PLATFORM.md)" \
	-run '^$' -bench HotInvoke -benchtime 2000x ./hostagent/initd
run "ember-init: its CPU per hot invocation with its Go runtime's sysmon thread at a 1 ms timer slack (what the agent sets) vs the default, alternating blocks" \
	-run '^$' -bench SysmonSlack -benchtime 4000x ./hostagent
run "usage records: one invocation's record encoded for the usage topic by hand (appendJSON) vs encoding/json, alternating" \
	-run '^$' -bench UsageRecordJSON ./internal/emberd
run "accounting: the agent's meter per invocation (mark and read: eBPF map and cgroup files), vs the cgroup-only meter" \
	-run '^$' -bench Meter ./hostagent
run "accounting: what the attached eBPF programs cost a TCP round trip (a container cgroup with them vs one without, alternating blocks)" \
	-run '^$' -bench CountedTraffic -benchtime 20000x ./bpf
run "Kafka side: Lambda event encoding and consume-to-invoke with a no-op function" \
	-run '^$' -bench . -benchtime 3x ./consumers ./consumers/kafkaevent
run "lag monitor: one sample of 8 bindings x 4 partitions, offsets still vs moved (ns/op at a 1 s interval = share of a core)" \
	-run '^$' -bench SampleOnce -benchtime 200x ./consumers/lagmon
run "registry: Resolve with and without the in-process cache (one Redis round trip)" \
	-run '^$' -bench . ./engine/registry
run "scheduler: an instance freed to the waiting invocation's handler start, vs one Redis PUBLISH" \
	-run '^$' -bench . -benchtime 1x ./engine/scheduler
