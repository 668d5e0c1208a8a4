#!/bin/bash
# find.sh FN: prints "S B": the shim and bootstrap host pids of function FN's container
for b in $(pgrep -x bootstrap); do
  tr '\0' '\n' < /proc/$b/environ 2>/dev/null | grep -qx "AWS_LAMBDA_FUNCTION_NAME=$1" || continue
  ns=$(readlink /proc/$b/ns/pid)
  for s in $(pgrep -f container-shim); do
    [ "$(readlink /proc/$s/ns/pid)" = "$ns" ] && { echo "$s $b"; exit 0; }
  done
done
exit 1
