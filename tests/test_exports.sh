#!/usr/bin/env bash
# libcnnc.so exports its API (cnn_*) and nothing else: a program defining
# gemm or im2col would otherwise take the library's own calls (see
# tests/interpose.c, which does and must still train).
#   test_exports.sh LIBCNNC
set -u
lib=$1
command -v nm >/dev/null || { echo "skipped: no nm"; exit 77; }
syms=$(nm -D --defined-only "$lib" | awk '{print $3}')
[ -n "$syms" ] || { echo "FAIL: nm listed no symbols of $lib"; exit 1; }
others=$(grep -v '^cnn_' <<<"$syms" | grep -vx -e _init -e _fini -e _edata -e _end -e __bss_start)
if [ -n "$others" ]; then
    echo "FAIL: $lib exports $(wc -l <<<"$others") symbols outside the API:"
    echo "$others" | head -20
    exit 1
fi
echo "ok: $lib exports $(grep -c '^cnn_' <<<"$syms") cnn_* functions and nothing else"
