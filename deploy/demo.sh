#!/usr/bin/env bash
# The `make run` demo: starts emberd on the embedded defaults (in-process
# Kafka-protocol broker, the Redis and containerd that setup.sh started, the
# host agent in-process), deploys examples/kafka-echo (an aws-lambda-go
# function), binds a topic to it, produces 1,000 events and prints what
# happened. emberd keeps running afterwards; `make stop` stops it.
#
#   deploy/demo.sh         run the demo
#   deploy/demo.sh stop    stop the emberd the demo started
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${EMBER_STATE:-$repo/.ember}
bin=$repo/bin
api=${EMBER_API:-http://127.0.0.1:8080}
events=${EMBER_DEMO_EVENTS:-1000}
export EMBER_API=$api

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# stop waits for emberd's clean stop, which lets invocations in flight
# finish (up to --drain-timeout, 30 s, then the agent's 30 s shutdown
# timeout), and kills it only past that: a second emberd started beside a
# draining one would find its ports taken.
stop() {
	if [ -f "$state/emberd.pid" ] && kill -0 "$(cat "$state/emberd.pid")" 2>/dev/null; then
		local pid
		pid=$(cat "$state/emberd.pid")
		kill "$pid"
		for i in $(seq 1 900); do
			kill -0 "$pid" 2>/dev/null || break
			[ "$i" = 20 ] && echo "emberd is letting invocations in flight finish (at most about a minute)"
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "emberd did not stop in 90 s: killing it"
			kill -9 "$pid"
		fi
		echo "emberd stopped"
	fi
	rm -f "$state/emberd.pid"
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

# shellcheck disable=SC1091
source "$state/env"
export EMBER_REDIS EMBER_CONTAINERD

stop
say "starting emberd (log: $state/emberd.log)"
"$bin/emberd" --state-dir "$state" --init-binary "$bin/ember-init" --keep-instances=false >>"$state/emberd.log" 2>&1 &
echo $! >"$state/emberd.pid"
for i in $(seq 1 600); do
	# emberd writes the administrator key (0600) on its first start.
	if [ -s "$state/admin.key" ] && EMBER_API_KEY=$(cat "$state/admin.key") "$bin/ember" status --ready >/dev/null 2>&1; then break; fi
	if ! kill -0 "$(cat "$state/emberd.pid")" 2>/dev/null; then
		echo "emberd exited; last lines of its log:"; tail -30 "$state/emberd.log"; exit 1
	fi
	[ "$i" = 600 ] && { echo "emberd not ready after 60 s"; tail -30 "$state/emberd.log"; exit 1; }
	sleep 0.1
done
admin_key=$(cat "$state/admin.key")
EMBER_API_KEY=$admin_key "$bin/ember" status

say "creating tenant demo and logging in as it"
# The tenant's key is shown once: keep it (0600) so a second `make run`
# can log in again; rotate if it was lost.
umask 077
if [ ! -s "$state/demo.key" ] || ! EMBER_API_KEY=$(cat "$state/demo.key") "$bin/ember" functions >/dev/null 2>&1; then
	if ! out=$(EMBER_API_KEY=$admin_key "$bin/ember" tenant create demo 2>&1); then
		out=$(EMBER_API_KEY=$admin_key "$bin/ember" tenant rotate demo)
	fi
	printf '%s\n' "$out" | sed -n 's/^api key: //p' >"$state/demo.key"
fi
umask 022
"$bin/ember" login --api-key-stdin <"$state/demo.key"
"$bin/ember" topic create demo-events --partitions 4

say "building examples/kafka-echo (aws-lambda-go, parses events.KafkaEvent)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$work/bootstrap" ./examples/kafka-echo)
(cd "$work" && zip -q fn.zip bootstrap)

say "deploying and binding topic demo-events"
"$bin/ember" deploy kafka-echo --zip "$work/fn.zip" --memory 128 --timeout 10s
"$bin/ember" bind demo --topic demo-events --function kafka-echo --from earliest

say "producing $events events at ${EMBER_DEMO_RATE:-200}/s"
seq 1 "$events" | sed "s/^/event-/" | "$bin/ember" produce demo-events --rate "${EMBER_DEMO_RATE:-200}"

say "waiting for the consumer lag to reach 0"
"$bin/ember" status --wait-lag demo --timeout 90s

say "what happened"
"$bin/ember" status
cat <<MSG

emberd is still running (API $api, log $state/emberd.log).
You are logged in as tenant "demo" (its key is in $state/demo.key; \`bin/ember login\`
saved it for the CLI). The administrator key is in $state/admin.key. Try:
  bin/ember invoke kafka-echo --payload '{}'
  seq 1 10 | bin/ember produce demo-events && bin/ember status
  EMBER_API_KEY=\$(cat $state/admin.key) bin/ember tenant create alice   # prints alice's key once
Stop everything with: make stop
MSG
