#!/usr/bin/env bash
# Test `personas run` sharding on a real, throw-away single-node Slurm cluster (Debian, as root).
#
# Usage:  PERSONAS_TEST_GGUF=target/models/smollm2-135m-q4_1.gguf scripts/slurm_test.sh [PERSONAS]
#         PERSONAS defaults to $PERSONAS, else ${CARGO_TARGET_DIR:-target}/debug/personas.
#
# What it does: installs slurm-wlm + munge if missing (else prints "SLURM TEST SKIPPED" and exits
# 0), starts its own munged, slurmctld and slurmd on a generated config in a temp dir, runs a
# study as a 4-task job array (each task finds its shard in SLURM_ARRAY_TASK_* by itself), merges
# the shards and checks the merge is byte-identical to one unsharded run. On exit the daemons it
# started are stopped and the temp dir is removed (installed packages stay).
set -euo pipefail

PERSONAS=${1:-${PERSONAS:-${CARGO_TARGET_DIR:-target}/debug/personas}}
MODEL=${PERSONAS_TEST_GGUF:?set PERSONAS_TEST_GGUF to a small .gguf model}
PERSONAS=$(realpath "$PERSONAS")
# -s: keep the name; a Hugging Face cache path is a link to a blob without the .gguf name.
MODEL=$(realpath -s "$MODEL")
[[ -x $PERSONAS ]] || { echo "slurm test: no personas binary at $PERSONAS (cargo build?)" >&2; exit 1; }

skip() { echo "SLURM TEST SKIPPED: $*" >&2; echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2; exit 0; }

# 1. Packages: Debian's slurm-wlm (slurmctld, slurmd, client tools) and munge (Slurm's auth).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp /tmp/slurm-apt.XXXXXX)
    if ! { apt-get install -y --no-install-recommends slurm-wlm munge >"$log" 2>&1 \
           || { apt-get update >>"$log" 2>&1 \
                && apt-get install -y --no-install-recommends slurm-wlm munge >>"$log" 2>&1; }; }; then
        msg=$(tail -n 3 "$log" | tr '\n' ' '); rm -f "$log"
        skip "cannot install slurm-wlm/munge: $msg"
    fi
    rm -f "$log"
fi
SECONDS=0   # time the test itself, not the first install

T=$(mktemp -d /tmp/personas-slurm.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    # Cancel any jobs first, so that no slurmstepd or personas outlives the daemons.
    if [[ -n ${SLURM_CONF:-} ]] && ((${#PIDS[@]})); then
        timeout 10 scancel --full --quiet -u root 2>/dev/null || true
        # Each slurmstepd keeps a socket in the spool dir until it exits: wait for them to go.
        for _ in $(seq 100); do compgen -G "$T/spool/localhost_*" >/dev/null || break; sleep 0.1; done
    fi
    # Stop the daemons in reverse start order (slurmd, slurmctld, munged), each by its own pid.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "slurm test: FAILED: $*" >&2; exit 1; }
mkdir -p "$T"/{log,state,spool,munge,out}

# 2a. munge with its own key and socket, so that a system munged (if any) is neither needed nor
#     touched; --force because munged refuses to run as root otherwise.
mungekey --create --keyfile="$T/munge/munge.key" 2>/dev/null \
    || { dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none; chmod 600 "$T/munge/munge.key"; }
munged --force --foreground --socket="$T/munge/sock" --key-file="$T/munge/munge.key" \
    --pid-file="$T/munge/pid" --seed-file="$T/munge/seed" --log-file="$T/log/munged.log" >"$T/log/munged.out" 2>&1 &
PIDS+=($!)

# 2b. slurm.conf: one node (localhost) with this machine's CPUs, no cgroups (no systemd here),
#     everything stateful under $T; uncommon ports so as not to clash with a real Slurm.
CPUS=$(nproc)
export SLURM_CONF=$T/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=personastest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=500 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# 2c. The Slurm daemons in the foreground (-D) as background jobs, so that we own their pids.
for _ in $(seq 50); do [[ -S $T/munge/sock ]] && break; sleep 0.1; done
slurmctld -D -i -f "$SLURM_CONF" >>"$T/log/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" >>"$T/log/slurmd.out" 2>&1 &
PIDS+=($!)
state=
for _ in $(seq 60); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 1
done
if [[ $state != idle ]]; then
    tail -n 15 "$T"/log/{munged,slurmctld,slurmd}.log >&2
    fail "node not idle after 60 s (state: '${state:-none}')"
fi

# 3. The study, then a 4-task array, 2 at a time (2 cores), one thread each.
STUDY=$T/study.toml
OUT=$T/out
cp "$(dirname "$0")/../tests/fixtures/eight-respondents.toml" "$STUDY"   # also the CLI tests' study
export PERSONAS STUDY MODEL OUT   # for job.sh, through sbatch's --export=ALL
cat >"$T/job.sh" <<'EOF'
#!/bin/bash
set -eu
exec "$PERSONAS" run "$STUDY" --quiet --model "$MODEL" \
    --out "$OUT/shard-$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN))-of-$SLURM_ARRAY_TASK_COUNT"
EOF
# Poll squeue rather than `sbatch --wait`, which polls so rarely that it adds ~20 s here.
JOB=$(sbatch --parsable --array=0-3%2 --cpus-per-task=1 --job-name=personas-shards \
    --chdir="$T" --output="$T/log/task-%a.out" --export=ALL,RAYON_NUM_THREADS=1 "$T/job.sh") || fail "sbatch failed"
for ((i = 0; i < 600; i++)); do
    [[ -z $(squeue -h -j "$JOB" -o %i 2>/dev/null) ]] && break
    sleep 1
done
((i < 600)) || fail "job array $JOB still running after 600 s"
# Finished jobs stay in slurmctld for MinJobAge (300 s): every task must be COMPLETED, exit 0:0.
bad=$(scontrol -o show job "$JOB" | grep -v 'JobState=COMPLETED .*ExitCode=0:0' \
    | sed -E 's/.*ArrayTaskId=([0-9]+) .*JobState=([A-Z_]+) .*ExitCode=([0-9:]+).*/task \1 \2 (exit \3);/' \
    | tr '\n' ' ' || true)
if [[ -n $bad ]]; then tail -n 5 "$T"/log/task-*.out >&2; fail "job array tasks failed: $bad"; fi
T_ARRAY=$SECONDS   # daemons up and the array done

# 4. Merge the shards; one unsharded run to compare with (all threads; SLURM_* unset in case this
#    script itself runs inside a Slurm array job).
"$PERSONAS" merge "$OUT"/shard-*-of-4 --out "$OUT/merged" >/dev/null
env -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_MIN -u SLURM_ARRAY_TASK_COUNT -u JOB_COMPLETION_INDEX \
    "$PERSONAS" run "$STUDY" --quiet --model "$MODEL" --out "$OUT/single" >"$T/log/single.out"
files=(responses.csv answers.csv journal.jsonl)
for f in "$OUT"/single/charts/hist_*.svg; do files+=("charts/${f##*/}"); done
((${#files[@]} > 3)) || fail "no charts/hist_*.svg in the single run"
for f in "${files[@]}"; do
    cmp "$OUT/merged/$f" "$OUT/single/$f" || fail "merged $f differs from the single run's"
done
n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["respondents"])' \
    "$OUT/merged/manifest.json") || fail "cannot read counts.respondents from merged/manifest.json"
[[ $n == 8 ]] || fail "merged manifest.json has counts.respondents=$n, not 8"

echo "slurm test: OK (Slurm up + 4-task array in ${T_ARRAY}s, merged == single for ${#files[@]} files, ${SECONDS}s in all)"
