#!/usr/bin/env bash
# Installed, cnnc runs: `meson install` into a temporary folder, then the
# installed trainer trains (it finds libcnnc through its run path, with no
# LD_LIBRARY_PATH), and the README's library example, built with the
# installed pkg-config file as a user builds it, trains and saves.
#   test_install.sh BUILD_DIR MKTINY SOURCE_ROOT SANITIZE
# SANITIZE: the build's b_sanitize ("none" unless a sanitizer build, whose
# library a program built without the sanitizer cannot load first).
set -u
build=$1 mktiny=$2 root=$3 sanitize=${4:-none}
fail() { echo "FAIL: $*"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/dest
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$work/install.log" 2>&1 ||
    fail "meson install: $(tail -5 "$work/install.log")"
trainer=$(find "$dest" -path '*/bin/trainer' -type f | head -1)
pc=$(find "$dest" -name cnnc.pc | head -1)
[ -x "$trainer" ] || fail "no installed bin/trainer under $dest"
[ -f "$pc" ] || fail "no installed cnnc.pc under $dest"
lib=$(find "$dest" -name 'libcnnc.so.*.*' -type f | head -1)
readelf -d "$lib" | grep -q 'SONAME.*libcnnc\.so\.[0-9]' || fail "the installed library has no versioned soname"
mkdir -p "$work/run/data/mnist"
"$mktiny" "$work/run/data/mnist" 28 >/dev/null || fail "mktiny"
cd "$work/run" || exit 1
out=$(env -u LD_LIBRARY_PATH "$trainer" --data-dir data --model "conv(4,3) relu flatten dense(10)" --epochs 1 \
    --batch 32 --checkpoint t.safetensors 2>&1) || fail "the installed trainer: $out"
[ -s t.safetensors ] || fail "the installed trainer wrote no checkpoint"
echo "ok: the installed trainer runs without LD_LIBRARY_PATH ($(readelf -d "$trainer" | grep -o 'RUNPATH.*'))"
if [ "$sanitize" != none ]; then
    echo "skipped: the example against a -fsanitize=$sanitize library (the sanitizer's runtime must load first)"
    exit 0
fi
# The .pc file of an installation at this folder: as `meson install` with
# --prefix writes it (--destdir keeps the build's prefix in it).
prefix=$(sed -n 's/^prefix=//p' "$pc")
mkdir -p "$work/pc"
sed "s|^prefix=.*|prefix=$dest$prefix|" "$pc" >"$work/pc/cnnc.pc"
flags=$(PKG_CONFIG_PATH=$work/pc pkg-config --cflags --libs cnnc) || fail "pkg-config --cflags --libs cnnc"
cc -std=c11 "$root/tools/example_train.c" $flags -o example 2>"$work/cc.log" || fail "cc: $(cat "$work/cc.log")"
env -u LD_LIBRARY_PATH ./example >"$work/ex.log" 2>&1 || fail "the example built with pkg-config: $(tail -5 "$work/ex.log")"
[ -s mnist.safetensors ] || fail "the example wrote no mnist.safetensors"
echo "ok: the README's example, built with pkg-config, runs without LD_LIBRARY_PATH"
