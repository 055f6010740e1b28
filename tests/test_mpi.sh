#!/usr/bin/env bash
# Data-parallel training under mpirun, on a tiny generated data set.
# usage: test_mpi.sh CASE TRAINER MKTINY MPIRUN
#   same:     1 process against -np 2 and -np 4 (1 thread each), tfcnn and a net with batch norm
#             and dropout: byte-identical checkpoints
#   resume:   a 2-rank run's checkpoint resumed with 1 and with 4 ranks, identical to the uninterrupted run;
#             SIGUSR1 to mpirun stops every rank at the same step with a checkpoint that resumes exactly
#   failures: a rank killed with SIGKILL, or a failure on rank 0 alone, ends the job within 10 s (a
#             loadable checkpoint stays);
#             ranks started with different arguments, and a batch smaller than the ranks, are refused
set -u
case_name=$1 trainer=$2 mktiny=$3 mpirun=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/mnist"
"$mktiny" "$work/data/mnist" || { echo "mktiny failed"; exit 1; }
cd "$work" || exit 1
export OMP_NUM_THREADS=1
# CI runs as root, which mpirun refuses unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
PLAIN="conv(8,3,pad=1) relu maxpool(2) conv(8,3,pad=1) relu maxpool(2) flatten dense(10)"  # for the 12x12 images
# Batch norm and dropout (statistics of the whole batch, masks by the image's index in it).
BN="conv(8,3,pad=1) bn relu maxpool(2) conv(8,3,pad=1,bias=0) bn relu dropout(0.3) maxpool(2) flatten dense(10)"
fail() { echo "FAIL: $*"; exit 1; }
train() { "$trainer" --data-dir data --batch 32 --seed 7 "$@"; }
ranks() { local n=$1; shift; "$mpirun" --oversubscribe --bind-to none -np "$n" "$trainer" --data-dir data --batch 32 --seed 7 "$@"; }
quiet() { "$@" >out.txt 2>&1 || fail "'$*' exited $?: $(cat out.txt)"; }

case $case_name in
same)
    # tfcnn needs 28x28 images: a second tiny set at that size.
    mkdir -p data28/mnist
    "$mktiny" data28/mnist 28 || fail "mktiny 28 failed"
    for model in tfcnn "$BN"; do
        dir=data
        [ "$model" = tfcnn ] && dir=data28
        quiet train --model "$model" --epochs 2 --checkpoint one.safetensors --data-dir "$dir" --overwrite
        for n in 2 4; do
            quiet ranks "$n" --model "$model" --epochs 2 --checkpoint "np$n.safetensors" --data-dir "$dir" --overwrite
            grep -q "data-parallel: $n ranks x 1 thread" out.txt || fail "no data-parallel banner: $(cat out.txt)"
            cmp one.safetensors "np$n.safetensors" || fail "$model: $n ranks differ from one process"
            echo "ok: $model: -np $n gives one process's bytes"
        done
    done
    # The last batch of this data (400 images) has 16: its chunks split unevenly but exactly.
    quiet ranks 3 --model "$BN" --epochs 1 --checkpoint a3.safetensors
    quiet ranks 3 --model "$BN" --epochs 1 --checkpoint b3.safetensors
    cmp a3.safetensors b3.safetensors || fail "3 ranks: two runs differ"
    echo "ok: 3 ranks repeat their bytes"
    ;;
resume)
    quiet train --model "$BN" --epochs 3 --checkpoint whole.safetensors
    quiet ranks 2 --model "$BN" --epochs 1 --checkpoint part.safetensors
    for n in 1 4; do
        cp part.safetensors "r$n.safetensors"
        if [ "$n" = 1 ]; then
            quiet "$trainer" --data-dir data --resume "r$n.safetensors" --epochs 3
        else
            quiet "$mpirun" --oversubscribe --bind-to none -np "$n" "$trainer" --data-dir data --resume "r$n.safetensors" --epochs 3
        fi
        cmp whole.safetensors "r$n.safetensors" || fail "2 ranks, resumed on $n, differ from the uninterrupted run"
        echo "ok: a 2-rank checkpoint resumed on $n rank(s) ends as the uninterrupted run"
    done
    # mpirun passes SIGUSR1 on to the ranks (its SIGTERM kills them a moment later).
    quiet train --model "$BN" --epochs 120 --checkpoint long.safetensors
    "$mpirun" --oversubscribe --bind-to none -np 2 "$trainer" --data-dir data --batch 32 --seed 7 --model "$BN" \
        --epochs 120 --checkpoint stop.safetensors >run.txt 2>&1 &
    job=$!  # mpirun itself, not a subshell
    for _ in $(seq 100); do [ -s stop.safetensors ] && break; sleep 0.1; done
    kill -USR1 "$job"
    wait "$job"
    rc=$?
    [ "$rc" -eq 138 ] || fail "SIGUSR1: exit $rc, expected 138: $(tail -5 run.txt)"
    grep -q "trainer: stopped by SIGUSR1 at epoch [0-9]*, batch [0-9]*; checkpoint written to stop.safetensors" run.txt ||
        fail "no stop message: $(cat run.txt)"
    heard=$(grep -c 'trainer: stopping after the current batch' run.txt)
    [ "$heard" -eq 1 ] || fail "SIGUSR1 was announced $heard times, expected once (rank 0): $(cat run.txt)"
    ! grep -q $'\033' run.txt || fail "the live progress line reached a redirected mpirun log: $(cat -v run.txt | head -5)"
    quiet "$trainer" --data-dir data --resume stop.safetensors
    cmp long.safetensors stop.safetensors || fail "stopped by SIGUSR1 and resumed: differs from the uninterrupted run"
    echo "ok: $(grep -o 'stopped by SIGUSR1 at epoch [0-9]*, batch [0-9]*' run.txt), resumed on 1 rank: identical"
    ;;
failures)
    # Different arguments on different ranks.
    "$mpirun" --oversubscribe --bind-to none -np 2 sh -c \
        "exec '$trainer' --data-dir data --model \"$PLAIN\" --epochs 1 --seed \$OMPI_COMM_WORLD_RANK --checkpoint x.safetensors" \
        >out.txt 2>&1 && fail "ranks with different seeds were accepted"
    grep -q "rank 1 was started with other arguments than rank 0" out.txt || fail "no message: $(cat out.txt)"
    echo "ok: ranks with different arguments refused"
    ranks 4 --model "$PLAIN" --batch 2 --epochs 1 --checkpoint x.safetensors >out.txt 2>&1 && fail "--batch 2 on 4 ranks accepted"
    grep -q -- "--batch 2 is smaller than the 4 ranks" out.txt || fail "no message: $(cat out.txt)"
    echo "ok: a batch smaller than the ranks refused"
    # Rank 0 fails alone (its checkpoint folder disappears): the whole job ends, not just rank 0.
    mkdir gone
    "$mpirun" --oversubscribe --bind-to none -np 2 "$trainer" --data-dir data --batch 32 --seed 7 --model "$BN" \
        --epochs 100000 --checkpoint gone/g.safetensors >run.txt 2>&1 &
    job=$!
    for _ in $(seq 100); do [ -s gone/g.safetensors ] && break; sleep 0.1; done
    mv gone moved  # atomic: the next checkpoint has no folder
    for _ in $(seq 100); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$job" 2>/dev/null && { kill -KILL "$job"; fail "the job still runs 10 s after rank 0 failed"; }
    wait "$job" && fail "the job exited 0 after rank 0 failed"
    # The folder may vanish before the temporary file is made or before it is renamed.
    grep -qE "gone/g.safetensors: cannot (create a temporary file beside it|write checkpoint): No such file" run.txt ||
        fail "no message: $(cat run.txt)"
    echo "ok: a failure on rank 0 alone ends the job with its message"
    # SIGKILL of one rank mid-run.
    "$mpirun" --oversubscribe --bind-to none -np 2 "$trainer" --data-dir data --batch 32 --seed 7 --model "$BN" \
        --epochs 100000 --checkpoint k.safetensors >run.txt 2>&1 &
    job=$!
    for _ in $(seq 100); do [ -s k.safetensors ] && break; sleep 0.1; done
    [ -s k.safetensors ] || fail "no checkpoint after 10 s: $(cat run.txt)"
    victim=$(pgrep -f -- "--checkpoint k.safetensors" | while read -r p; do
        [ "$(ps -o comm= -p "$p")" = trainer ] && echo "$p"; done | tail -1)
    [ -n "$victim" ] || fail "no rank process found"
    t0=$(date +%s.%N)
    kill -KILL "$victim"
    for _ in $(seq 100); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$job" 2>/dev/null && { kill -KILL "$job"; fail "the job still runs 10 s after a rank was killed"; }
    wait "$job"
    rc=$?
    t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    [ "$rc" -ne 0 ] || fail "the job exited 0 after a rank was killed"
    echo "ok: the job ended $t s after SIGKILL of rank process $victim (exit $rc)"
    "$trainer" eval --data-dir data --checkpoint k.safetensors >out.txt 2>&1 || fail "checkpoint not loadable: $(cat out.txt)"
    echo "ok: the last checkpoint loads"
    ;;
*) fail "unknown case $case_name" ;;
esac
