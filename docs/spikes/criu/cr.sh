#!/bin/bash
# cr.sh dump S B DIR | restore S DIR : checkpoint the bootstrap B of container shim S
# (its namespaces stay, held by S) and restore it into them.
set -u
C=${CRIU:-/root/criu/criu-4.1.1/criu/criu}
export PYTHONPATH=${CRIU_SRC:-/root/criu/criu-4.1.1}/lib:${CRIU_SRC:-/root/criu/criu-4.1.1}/crit
case $1 in
dump)
  S=$2 B=$3 D=$4
  PIDNS=$(stat -Lc %i /proc/$B/ns/pid); NETNS=$(stat -Lc %i /proc/$B/ns/net)
  rm -rf $D; mkdir -p $D
  readlink /proc/$B/fd/1 > $D/stdout.pipe
  kill -USR1 $S
  t0=$(date +%s%N)
  $C dump -t $B -D $D -o dump.log -v1 --external "pid[$PIDNS]:pidns" --external "net[$NETNS]:netns" \
     --external 'mnt[]:m' --tcp-established --manage-cgroups=ignore --network-lock nftables || { grep Error $D/dump.log; exit 1; }
  echo "dump $(( ($(date +%s%N)-t0)/1000000 )) ms, $(du -sh $D | cut -f1)"
  # The tree joins the container's namespaces on restore: make the images'
  # own namespaces CRIU's, so that it creates none.
  /usr/bin/python3 -m crit decode -i $D/ids-$(ls $D | sed -n 's/^ids-\([0-9]*\).img/\1/p' | head -1).img > $D/ids.json
  /usr/bin/python3 -m crit decode -i $D/inventory.img > $D/inv.json
  /usr/bin/python3 - $D <<'PY'
import json, sys
d = sys.argv[1]
ids = json.load(open(d + '/ids.json'))['entries'][0]
inv = json.load(open(d + '/inv.json'))
r = inv['entries'][0]['root_ids']
for k in ('net_ns_id', 'ipc_ns_id', 'uts_ns_id', 'mnt_ns_id', 'user_ns_id'):
    r[k] = ids[k]
json.dump(inv, open(d + '/inv.json', 'w'))
PY
  /usr/bin/python3 -m crit encode -i $D/inv.json -o $D/inventory.img
  ;;
restore)
  S=$2 D=$3
  t0=$(date +%s%N)
  (
   while IFS=: read -r n ctrl path; do
     case "$ctrl" in pids|memory|cpuacct|cpu) echo $BASHPID > /sys/fs/cgroup/$ctrl$path/cgroup.procs;; "") echo $BASHPID > /sys/fs/cgroup/unified$path/cgroup.procs;; esac
   done < /proc/$S/cgroup
   exec 8</proc/$S/ns/pid 9>/proc/$S/fd/1
   exec $C restore -D $D -o restore.log -v1 --restore-detached --tcp-established --manage-cgroups=ignore \
     --inherit-fd "fd[8]:pidns" --inherit-fd "fd[9]:$(cat $D/stdout.pipe)" \
     --join-ns net:/proc/$S/ns/net --join-ns ipc:/proc/$S/ns/ipc --join-ns uts:/proc/$S/ns/uts \
     --join-ns mnt:/proc/$S/ns/mnt --join-ns time:/proc/$S/ns/time --join-ns user:/proc/$S/ns/user
  ) || { grep -E "Error" $D/restore.log; exit 1; }
  # CRIU leaves its network lock in a joined namespace: lift it.
  for t in $(nsenter -t $S -n nft list tables | awk '/CRIU/{print $3}'); do nsenter -t $S -n nft delete table inet $t; done
  echo "restore $(( ($(date +%s%N)-t0)/1000000 )) ms"
  ;;
esac
