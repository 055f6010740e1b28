#!/usr/bin/env bash
# tools/bench on a net of more layers than its tables once held (resnet20:
# 72): every layer's row, sane thread counts, exit 0. Under ASan (CI's
# sanitizer stage) a table overrun fails here.
# usage: test_bench.sh BENCH
set -u
bench=$1
out=$("$bench" --model resnet20 --input 3x16x16 --batch 4 --threads 1 --steps 1 --reps 1 --warmup 0 2>&1)
rc=$?
fail() { echo "FAIL: $*"; echo "$out"; exit 1; }
[ "$rc" -eq 0 ] || fail "bench exited $rc"
grep -q "^per layer at 1 threads" <<<"$out" || fail "no per-layer table at 1 thread"
grep -qE "^ +71  dense\(10\)" <<<"$out" || fail "no row for layer 71"
grep -qE "^ +66  conv\(64,3" <<<"$out" || fail "no per-pass row for layer 66"
echo "ok: bench lists all 72 layers of resnet20"

# A first convolution whose input is larger than every layer's output: the
# per-pass timing's input gradient once overran the net's gradient buffer
# (ASan here; a crash in free() without it).
out=$("$bench" --model "conv(64,3) relu flatten dense(10)" --input 64x6x6 --batch 8 --threads 2 --steps 1 --reps 1 \
      --warmup 0 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "bench on a 64x6x6 input exited $rc"
grep -qE "^ +0  conv\(64,3" <<<"$out" || fail "no per-pass row for the first convolution"
echo "ok: per-pass timing of a first layer with a large input"
