#!/usr/bin/env bash
# End-to-end tests of the trainer program on a tiny generated data set.
# usage: test_trainer.sh CASE TRAINER MKTINY
set -u
case_name=$1 trainer=$2 mktiny=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data/mnist"
"$mktiny" "$work/data/mnist" || { echo "mktiny failed"; exit 1; }
cd "$work" || exit 1
MODEL="conv(8,3,pad=1) relu maxpool(2) conv(8,3,pad=1) relu maxpool(2) flatten dense(10)"
export OMP_NUM_THREADS=2

fail() { echo "FAIL: $*"; exit 1; }
# expect CODE PATTERN CMD...: runs CMD, checks its exit status and that stderr+stdout matches PATTERN.
expect() {
    local code=$1 pattern=$2
    shift 2
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    [ "$rc" -eq "$code" ] || fail "'$*' exited $rc, expected $code; output: $out"
    grep -qE -- "$pattern" <<<"$out" || fail "'$*' output lacks /$pattern/: $out"
    echo "ok: exit $rc, /$pattern/: $*"
}
train() { "$trainer" --data-dir data --model "$MODEL" --batch 32 --seed 7 "$@"; }

case $case_name in
usage)
    expect 0 "usage: trainer \[COMMAND\]" "$trainer" --help
    expect 0 "--dataset NAME" "$trainer" train --help
    expect 0 "predict --checkpoint FILE" "$trainer" predict --help
    expect 0 "^cnnc trainer [0-9]" "$trainer" --version
    expect 2 "unknown option '--bacth'" "$trainer" --bacth 64
    expect 2 "--batch needs a value" "$trainer" --batch
    expect 2 "--batch: 'many' is not a whole number" "$trainer" --batch many
    expect 2 "--batch: '0' is not a whole number in 1..65536" "$trainer" --batch 0
    expect 2 "--lr: 'fast' is not a number" "$trainer" --lr fast
    expect 2 "unknown data set 'imagenet'" "$trainer" --dataset imagenet
    expect 2 "unknown optimizer 'rmsprop'" "$trainer" --optimizer rmsprop
    expect 2 "unknown schedule 'linear'" "$trainer" --schedule linear
    expect 2 "unknown command 'fit'" "$trainer" fit
    expect 2 "unknown layer 'resnet'" "$trainer" --data-dir data --model resnet --epochs 1
    expect 2 "kernel 5x5 does not fit" "$trainer" --data-dir data --model "conv(4,5) maxpool(2) conv(4,5) flatten dense(10)"
    expect 2 "ends in 7 outputs but mnist has 10 classes" "$trainer" --data-dir data --model "flatten dense(7)"
    expect 2 "predict needs at least one IMAGE" "$trainer" predict --checkpoint x.safetensors
    expect 2 "--checkpoint FILE is required" "$trainer" eval
    expect 1 "mnist is not available in nowhere/mnist; get it with: tools/fetch-data mnist --dir nowhere" \
        "$trainer" --data-dir nowhere
    expect 0 "total: 93322 parameters" "$trainer" summary --model tfcnn --dataset mnist
    expect 0 "conv\(64,3,stride=1,pad=1,bias=0\) +64x32x32" "$trainer" summary --model vgg8bn --dataset cifar10
    ;;
train)
    expect 0 "epoch 2/2 .*test loss" train --epochs 2 --checkpoint a.safetensors --log run.csv
    [ -s a.safetensors ] || fail "no checkpoint written"
    [ "$(wc -l <run.csv)" -eq 3 ] || fail "run.csv should have a header and 2 rows: $(cat run.csv)"
    head -1 run.csv | grep -q "^epoch,lr,train_loss,train_acc,eval_split,eval_loss,eval_acc" || fail "csv header"
    # The tiny set is easy: the last epoch must reach 100% test accuracy.
    train --epochs 10 --checkpoint b.safetensors | tee out.txt
    grep -q "epoch 10/10 .*test loss [0-9.]* acc 100.00%" out.txt || fail "tiny set not learnt"
    grep -q "peak memory [0-9]* MB" out.txt || fail "no peak memory report"
    grep -q "confusion matrix" out.txt || fail "no confusion matrix"
    expect 0 "eval: b.safetensors on mnist test \(100 images\): loss [0-9.]+ accuracy 100.00%" \
        "$trainer" eval --checkpoint b.safetensors --data-dir data
    expect 0 "digit3.png: 3 \([0-9.]+%\), [0-9] \(" "$trainer" predict --checkpoint b.safetensors data/mnist/digit3.png
    expect 0 "digit3.pgm: 3 \(" "$trainer" predict --checkpoint b.safetensors data/mnist/digit3.pgm
    expect 1 "not-an-image.png: cannot decode image" "$trainer" predict --checkpoint b.safetensors data/mnist/not-an-image.png
    expect 1 "missing.png: cannot open image" "$trainer" predict --checkpoint b.safetensors missing.png
    head -c 300 b.safetensors >broken.safetensors
    expect 1 "broken.safetensors: header length .* does not fit" "$trainer" eval --checkpoint broken.safetensors --data-dir data
    # A validation split is reported as such.
    expect 0 "epoch 1/1 .* val loss" train --epochs 1 --val-split 100 --checkpoint v.safetensors
    expect 0 "^test loss [0-9.]+ acc" train --epochs 1 --val-split 100 --checkpoint v.safetensors
    ;;
threads)
    expect 0 "cnnc .* trainer: 3 OpenMP threads" train --epochs 1 --threads 3 --checkpoint t3.safetensors
    OMP_NUM_THREADS=1 expect 0 "trainer: 1 OpenMP threads" train --epochs 1 --checkpoint t1.safetensors
    OMP_NUM_THREADS=1 expect 0 "trainer: 2 OpenMP threads" train --epochs 1 --threads 2 --checkpoint t2.safetensors
    # The same seed gives the same bytes at any thread count.
    cmp t1.safetensors t2.safetensors || fail "1 and 2 threads differ"
    cmp t1.safetensors t3.safetensors || fail "1 and 3 threads differ"
    echo "ok: checkpoints identical at 1, 2 and 3 threads"
    ;;
resume)
    train --epochs 3 --augment --checkpoint straight.safetensors >/dev/null || fail "straight run"
    train --epochs 1 --augment --checkpoint part.safetensors >/dev/null || fail "first epoch"
    expect 0 "resume: part.safetensors at epoch 1, batch 0" "$trainer" --resume part.safetensors --epochs 3 --data-dir data
    cmp straight.safetensors part.safetensors || fail "resumed run differs from the uninterrupted one"
    echo "ok: resume at an epoch boundary is bit-identical"
    ;;
sigint)
    # Ctrl-C mid-run: exit 130, a checkpoint that resumes to the same final weights.
    train --epochs 600 --checkpoint straight.safetensors >/dev/null || fail "straight run"
    # The program itself in the background (a shell function there would be a
    # subshell, and those ignore SIGINT).
    "$trainer" --data-dir data --model "$MODEL" --batch 32 --seed 7 --epochs 600 --checkpoint int.safetensors \
        >int.out 2>&1 &
    pid=$!
    sleep 0.5
    kill -INT $pid
    wait $pid
    rc=$?
    [ "$rc" -eq 130 ] || fail "interrupted trainer exited $rc, expected 130: $(cat int.out)"
    grep -q "interrupted at epoch [0-9]*, batch [0-9]*; checkpoint written to int.safetensors" int.out ||
        fail "no interruption message: $(cat int.out)"
    expect 0 "resume: int.safetensors at epoch" "$trainer" --resume int.safetensors --data-dir data
    cmp straight.safetensors int.safetensors || fail "interrupted+resumed run differs from the uninterrupted one"
    echo "ok: SIGINT exit 130, resumed run bit-identical"
    ;;
*)
    fail "unknown case $case_name"
    ;;
esac
