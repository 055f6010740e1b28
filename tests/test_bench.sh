#!/usr/bin/env bash
# tools/bench on a net of more layers than its tables once held (resnet20:
# 72): every layer's row, sane thread counts, exit 0. Under ASan (CI's
# sanitizer stage) a table overrun fails here.
# With BENCH_KERNELS (x86-64 builds), its --small-c and --winograd modes too.
# usage: test_bench.sh BENCH [BENCH_KERNELS]
set -u
bench=$1
kernels=${2:-}
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

[ -n "$kernels" ] || exit 0
# bench_kernels --small-c: every row, and a clear refusal of a bad shape.
out=$("$kernels" --reps 1 --small-c 3,32,32 2>&1)
rc=$?
if grep -q "have no small-channel convolution" <<<"$out"; then  # a CPU without AVX2: nothing to time
  echo "ok: bench_kernels --small-c refused on these kernels: $out"
  exit 0
fi
[ "$rc" -eq 0 ] || fail "bench_kernels --small-c exited $rc"
for row in "forward  " "apart" "weight gradient" "pool backward"; do
  grep -q "$row" <<<"$out" || fail "bench_kernels --small-c printed no '$row' row"
done
out=$("$kernels" --small-c 3,32 2>&1)
rc=$?
[ "$rc" -eq 2 ] || fail "bench_kernels --small-c 3,32 exited $rc, not 2"
grep -q -- "--small-c wants C,OC,H" <<<"$out" || fail "bench_kernels --small-c 3,32: no message naming the option"
echo "ok: bench_kernels --small-c"

# bench_kernels --winograd: each step's row, and a clear refusal of a bad shape.
out=$("$kernels" --reps 1 --winograd 32,64,15,2 2>&1)
rc=$?
[ "$rc" -eq 0 ] || fail "bench_kernels --winograd exited $rc"
for row in "input transform" "36 products" "output transform"; do
  grep -q "$row" <<<"$out" || fail "bench_kernels --winograd printed no '$row' row"
done
out=$("$kernels" --winograd 30,64,15,2 2>&1)
rc=$?
[ "$rc" -eq 2 ] || fail "bench_kernels --winograd 30,64,15,2 exited $rc, not 2"
grep -q -- "--winograd wants C,OC,H,N" <<<"$out" || fail "bench_kernels --winograd 30,...: no message naming the option"
echo "ok: bench_kernels --winograd"
