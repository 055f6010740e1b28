#!/usr/bin/env bash
# Runs one test of the fast suite on an older CPU model through Debian's
# qemu-user, so that an instruction the CPU lacks (SIGILL) or a wrong kernel
# choice shows up here rather than on a user's machine.
#   test_qemu.sh QEMU CPU dispatch TRAINER MKTINY   the trainer's kernels banner
#   test_qemu.sh QEMU CPU unit TEST_BINARY           a Check unit test
#   test_qemu.sh QEMU CPU script SCRIPT ARGS...      a test_trainer.sh case
# GOMP_SPINCOUNT is set so that no program re-executes itself (an exec leaves
# the emulator: qemu-user runs only the process it started).
set -u
qemu=$1 cpu=$2 kind=$3
shift 3
export GOMP_SPINCOUNT=3000
export CK_TIMEOUT_MULTIPLIER=20  # emulation is 5-20x slower than the CPU itself
# Finite differences at 48 values a tensor, not all: here the question is
# whether the emulated CPU's kernels run (no SIGILL, the right dispatch) and
# agree; the complete differences of the same code run natively. They took
# test_layers under Haswell to 19 minutes.
export CNNC_TEST_FD_POINTS=48
export CNNC_TEST_WRAPPER="$qemu -cpu $cpu"
fail() { echo "FAIL: $*"; exit 1; }
case $kind in
dispatch)
    trainer=$1 mktiny=$2
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/data/mnist"
    "$mktiny" "$work/data/mnist" || fail "mktiny failed"
    # What the emulated CPU has decides the kernels: no AVX2 on Nehalem.
    case $cpu in
    Nehalem | Westmere | SandyBridge | IvyBridge | Conroe | Penryn) want=reference ;;
    *) want=avx2 ;;
    esac
    out=$($CNNC_TEST_WRAPPER "$trainer" --data-dir "$work/data" --model "conv(4,3) relu flatten dense(10)" \
        --epochs 1 --batch 32 --checkpoint "$work/d.safetensors" 2>&1) || fail "trainer under qemu -cpu $cpu: $out"
    echo "$out" | head -3
    grep -qE "trainer: kernels $want \(.*the best this CPU runs\)" <<<"$out" ||
        fail "qemu -cpu $cpu: expected kernels '$want' chosen automatically"
    echo "ok: qemu -cpu $cpu runs the trainer with kernels $want"
    ;;
unit) exec $CNNC_TEST_WRAPPER "$@" ;;
script) exec bash "$@" ;;  # the script runs the trainer through CNNC_TEST_WRAPPER
*) fail "unknown kind '$kind'" ;;
esac
