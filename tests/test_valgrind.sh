#!/usr/bin/env bash
# A short real training run (300 MNIST images, 2 threads) under valgrind:
# no memory errors and no definite leaks. usage: test_valgrind.sh TRAINER DATA_DIR
set -u
trainer=$1 data=$2
command -v valgrind >/dev/null || { echo "FAIL: valgrind is not installed (tools/install-deps)"; exit 1; }
[ -f "$data/mnist/train-labels-idx1-ubyte" ] || [ -f "$data/mnist/train-labels-idx1-ubyte.gz" ] ||
    { echo "FAIL: MNIST missing in $data/mnist: run tools/fetch-data mnist"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# GOMP_SPINCOUNT set: the trainer then runs as it is instead of re-executing
# itself to set it (valgrind does not follow an exec by default).
GOMP_SPINCOUNT=3000 valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --log-file="$work/vg.log" \
    "$trainer" --dataset mnist --data-dir "$data" --model tfcnn --limit-train 300 --limit-test 100 --epochs 1 \
    --threads 2 --batch 64 --checkpoint "$work/v.safetensors" >"$work/out.txt" 2>&1
rc=$?
cat "$work/vg.log" | grep -E "ERROR SUMMARY|definitely lost|in use at exit" || true
if [ "$rc" -ne 0 ]; then
    echo "FAIL: trainer under valgrind exited $rc"
    cat "$work/out.txt"
    grep -A20 -E "Invalid|uninitialised|definitely lost in" "$work/vg.log" | head -80
    exit 1
fi
grep -q "ERROR SUMMARY: 0 errors" "$work/vg.log" ||
    { echo "FAIL: valgrind reported errors or did not run the trainer:"; cat "$work/vg.log"; exit 1; }
echo "ok: 300-image MNIST run clean under valgrind"
