#!/usr/bin/env bash
# End-to-end tests of the trainer program on a tiny generated data set.
# usage: test_trainer.sh CASE TRAINER MKTINY [SOURCE_ROOT]
set -u
case_name=$1 trainer=$2 mktiny=$3 root=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Under an emulator (tests/test_qemu.sh) the trainer runs through it.
if [ -n "${CNNC_TEST_WRAPPER:-}" ]; then
    printf '#!/bin/sh\nexec %s "%s" "$@"\n' "$CNNC_TEST_WRAPPER" "$trainer" >"$work/trainer"
    chmod +x "$work/trainer"
    trainer=$work/trainer
fi
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
    local rc
    out=$("$@" 2>&1)  # global: callers may check more of it
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
    expect 2 "unknown schedule 'onecycle' \(expected constant, step, cosine or linear\)" "$trainer" --schedule onecycle
    expect 2 "--label-smoothing: '1' is not a number in \[0, 0.99\]" "$trainer" --label-smoothing 1
    expect 2 "--ema: '1.5' is not a number in \[0, 0.99999\]" "$trainer" --ema 1.5
    expect 2 "--ema needs a value" "$trainer" --ema
    expect 2 "--lr-start: '2' is not a number in \[0, 1\]" "$trainer" --lr-start 2
    expect 2 "--lr-end: 'x' is not a number in \[0, 1\]" "$trainer" --lr-end x
    expect 2 "--lookahead: '-1' is not a whole number in 0..1000000" "$trainer" --lookahead -1
    expect 2 "--whiten-bias-epochs: '-1' is not a whole number in 0..100000" "$trainer" --whiten-bias-epochs -1
    expect 2 "--whiten-bias-epochs: the model has no whitening layer" "$trainer" --data-dir data \
        --model "conv(4,3) relu flatten dense(10)" --whiten-bias-epochs 2
    expect 2 "--drop-last: the 400 training images make no whole batch of 512" "$trainer" --data-dir data \
        --model "conv(4,3) relu flatten dense(10)" --batch 512 --drop-last
    expect 2 "layer 0 \(conv\): init=eye is not default, dirac or whiten" "$trainer" --data-dir data --model "conv(k=2,init=eye) flatten dense(10)"
    expect 2 "init=whiten needs 2 x in x kh x kw = 8 output channels" "$trainer" --data-dir data \
        --model "conv(6,2,init=whiten) flatten dense(10)"
    expect 2 "unknown initialisation 'xavier' \(expected pytorch or he\)" "$trainer" --init xavier
    expect 2 "unknown command 'fit'" "$trainer" fit
    expect 2 "unknown kernels 'sse9' \(expected auto, .*reference\)" "$trainer" --data-dir data --kernels sse9
    CNNC_KERNELS=sse9 expect 2 "CNNC_KERNELS: cannot use kernels 'sse9'" "$trainer" --data-dir data
    expect 2 "unknown layer 'resnet'" "$trainer" --data-dir data --model resnet --epochs 1
    # A mistyped model name is told apart from a description, before any data is loaded.
    expect 2 "--model tfcn: not a built-in model \(lenet, tfcnn, vgg8bn, resnet20, airbench94\); a model description such as \"conv.*\" is also accepted" \
        "$trainer" --data-dir data --model tfcn --epochs 1
    grep -q "^data:" <<<"$out" && fail "data loaded before refusing --model tfcn: $out"
    expect 2 "--model tfcn: not a built-in model" "$trainer" summary --dataset folder:nowhere --model tfcn
    expect 2 "layer 1: unknown layer 'relz'" "$trainer" --dataset folder:nowhere --model "conv(4,3) relz flatten dense(10)"
    grep -q "nowhere" <<<"$out" && fail "data loaded before refusing a bad model description: $out"
    expect 0 "--overwrite +let a new run replace an existing --checkpoint" "$trainer" train --help
    expect 0 "--limit-train N +use only N training images \(0: all, the default\)" "$trainer" train --help
    grep -q "random images, every class in proportion" <<<"$out" || fail "--help does not say how subsets are drawn: $out"
    grep -q "the first N" <<<"$out" || fail "--help does not say the built-in sets take the first N: $out"
    expect 2 "kernel 5x5 does not fit" "$trainer" --data-dir data --model "conv(4,5) maxpool(2) conv(4,5) flatten dense(10)"
    expect 2 "ends in 7 outputs but mnist has 10 classes" "$trainer" --data-dir data --model "flatten dense(7)"
    # summary accepts and refuses exactly what train does
    expect 2 "ends in 7 outputs but mnist has 10 classes" "$trainer" summary --model "conv(8,3) relu flatten dense(7)"
    expect 2 "predict needs at least one IMAGE" "$trainer" predict --checkpoint x.safetensors
    # Output paths are checked before any data is loaded or step run.
    t0=$(date +%s%N)
    expect 2 "--checkpoint /nonexistent/x.safetensors: cannot create files in /nonexistent: No such file" \
        "$trainer" --data-dir data --epochs 1 --checkpoint /nonexistent/x.safetensors
    ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$ms" -lt 1000 ] || fail "a bad --checkpoint took $ms ms to refuse"
    grep -q "^data:\|^epoch" <<<"$out" && fail "data loaded or training done before refusing: $out"
    expect 2 "--log /nonexistent/x.csv: cannot create files in /nonexistent" \
        "$trainer" --data-dir data --epochs 1 --checkpoint ok.safetensors --log /nonexistent/x.csv
    [ -e ok.safetensors ] && fail "a checkpoint was written although --log was refused"
    mkdir -p adir
    expect 2 "--checkpoint adir: is a folder, not a file" "$trainer" --data-dir data --checkpoint adir
    expect 2 "--log adir: is a folder" "$trainer" --data-dir data --checkpoint ok.safetensors --log adir
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
    sed -n 2p run.csv | grep -q "^1,0.001," || fail "lr not logged as 0.001: $(sed -n 2p run.csv)"
    # Each row names its run and carries the run's settings; a second run
    # appended to the log gets another id.
    head -1 run.csv | grep -q ",train_img_per_s,run,settings$" || fail "csv header lacks run,settings: $(head -1 run.csv)"
    python3 - run.csv "$MODEL" <<'PY' || fail "run ids and settings in run.csv: $(cat run.csv)"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 2 and rows[0]["run"] == rows[1]["run"] and rows[0]["run"], rows
s = dict(kv.split("=", 1) for kv in rows[0]["settings"].split("; "))
assert s["dataset"] == "mnist" and s["optimizer"] == "adam" and s["epochs"] == "2" and s["batch"] == "32", s
assert s["model"] == sys.argv[2] and s["seed"] == "7" and s["base_lr"] == "0.001" and "kernels" in s, s
PY
    train --epochs 1 --checkpoint a2.safetensors --log run.csv >/dev/null || fail "second logged run"
    ids=$(python3 -c 'import csv,sys; print(len({r["run"] for r in csv.DictReader(open(sys.argv[1]))}))' run.csv)
    [ "$ids" = 2 ] || fail "two runs appended to run.csv should have two ids: $(cut -d, -f13 run.csv)"
    # A log of an older release (other columns) is refused before any work.
    printf 'epoch,lr,train_loss,train_acc,eval_split,eval_loss,eval_acc,macro_precision,macro_recall,macro_f1,epoch_seconds,train_img_per_s\n' >old.csv
    expect 2 "--log old.csv: its columns differ from this trainer's" train --epochs 1 --log old.csv
    # Steps too: every 3rd of 2 x 13 steps in steps.steps.csv.
    train --epochs 2 --checkpoint st.safetensors --log steps.csv --log-every 3 >/dev/null || fail "--log-every run"
    head -1 steps.steps.csv | grep -q "^step,epoch,batch,loss,lr,img_per_s,run$" || fail "step log header: $(head -1 steps.steps.csv)"
    [ "$(wc -l <steps.steps.csv)" -eq 9 ] || fail "step log should have 8 rows: $(cat steps.steps.csv)"
    sed -n 2p steps.steps.csv | grep -qE "^3,1,3,[0-9.]+,0.001," || fail "first step row: $(sed -n 2p steps.steps.csv)"
    sed -n 9p steps.steps.csv | grep -qE "^24,2,11," || fail "last step row: $(sed -n 9p steps.steps.csv)"
    expect 2 "--log-every N needs --log FILE.csv" train --epochs 1 --log-every 5
    expect 2 "--conv: cannot use the convolution algorithm 'fft'" train --epochs 1 --conv fft
    # The initialisation is recorded; PyTorch's default starts near ln 10, He's far above.
    grep -aq '"init":"pytorch"' a.safetensors || fail "checkpoint lacks init=pytorch"
    expect 0 "epoch 1/1  train loss 2\.[23]" train --epochs 1 --lr 0 --checkpoint lr0.safetensors
    expect 0 "epoch 1/1  train loss ([3-9]|[1-9][0-9])\." train --epochs 1 --lr 0 --init he --checkpoint he.safetensors
    grep -aq '"init":"he"' he.safetensors || fail "checkpoint lacks init=he"
    # Singular where it is one; the epoch time includes the evaluation.
    expect 0 "train: 1 epoch of [0-9]+ steps, .* 2 threads" train --epochs 1 --checkpoint one.safetensors
    grep -qE "^epoch 1/1 .* [0-9.]+ s \(eval [0-9.]+ s\)" <<<"$out" || fail "epoch time line: $out"
    # Each custom model gets its own default checkpoint.
    train --epochs 1 >/dev/null || fail "default checkpoint run"
    "$trainer" --data-dir data --model "flatten dense(10)" --epochs 1 >/dev/null || fail "second model"
    [ "$(ls cnnc-mnist-custom-*.safetensors | wc -l)" -eq 2 ] || fail "custom models share a default file: $(ls)"
    # No run overwrites a checkpoint unasked: refused before any data is loaded,
    # unless it resumes or starts from that file, or with --overwrite.
    cp a.safetensors a-kept.safetensors
    expect 2 "--checkpoint a.safetensors: the file exists; continue its run with --resume a.safetensors, replace it with --overwrite, or give another --checkpoint" \
        train --epochs 1 --checkpoint a.safetensors
    grep -q "^data:" <<<"$out" && fail "data loaded before refusing an existing checkpoint: $out"
    cmp a.safetensors a-kept.safetensors || fail "a refused run changed a.safetensors"
    expect 2 "--checkpoint cnnc-mnist-custom-[0-9a-f]+.safetensors \(the default\): the file exists" train --epochs 1
    expect 0 "epoch 1/1" train --epochs 1 --checkpoint a.safetensors --overwrite
    ! cmp -s a.safetensors a-kept.safetensors || fail "--overwrite did not replace a.safetensors"
    expect 0 "init: weights from a-kept.safetensors" train --epochs 1 --init-from a-kept.safetensors --checkpoint a-kept.safetensors
    # The checkpoint keeps the data folder as an absolute path: eval finds it
    # from another folder; a --data-dir given there wins.
    mkdir -p elsewhere
    (cd elsewhere && expect 0 "eval: $work/a.safetensors on mnist test \(100 images\)" "$trainer" eval --checkpoint "$work/a.safetensors") ||
        exit 1
    (cd elsewhere && expect 1 "mnist is not available in nowhere/mnist" "$trainer" eval --checkpoint "$work/a.safetensors" \
        --data-dir nowhere) || exit 1
    # A checkpoint written by the library alone (no trainer metadata): eval
    # needs --dataset and then feeds pixels/255, as the batcher does by default.
    train --epochs 2 --no-normalize --checkpoint raw.safetensors >/dev/null || fail "--no-normalize run"
    python3 - raw.safetensors lib.safetensors <<'PY' || fail "cannot strip the metadata"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
md = h["__metadata__"]
for k in list(md):
    if k not in ("format", "model", "input_shape") and not k.startswith(("optimizer", "lr", "beta", "eps",
                                                                          "weight_decay", "momentum", "nesterov", "net_step")):
        del md[k]
t = json.dumps(h, separators=(",", ":")).encode()
t += b" " * (-len(t) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PY
    grep -aq normalize lib.safetensors && fail "lib.safetensors still has trainer metadata"
    want=$("$trainer" eval --checkpoint raw.safetensors --data-dir data | grep -o "accuracy [0-9.]*%")
    expect 2 "lib.safetensors: the checkpoint does not name its data set .*give --dataset" \
        "$trainer" eval --checkpoint lib.safetensors --data-dir data
    expect 0 "eval: lib.safetensors on mnist test .*$want" "$trainer" eval --checkpoint lib.safetensors --data-dir data --dataset mnist
    # Such a checkpoint names no classes: predict calls them by their index.
    expect 0 "digit3.png: [0-9] \([0-9.]+%\), [0-9] \([0-9.]+%\), [0-9] \(" "$trainer" predict --checkpoint lib.safetensors \
        data/mnist/digit3.png
    if [ -n "$root" ] && command -v gnuplot >/dev/null; then
        expect 0 "plot-metrics: wrote run.png" "$root/tools/plot-metrics" run.csv run.png
        [ "$(head -c 4 run.png | tail -c 3)" = PNG ] || fail "run.png is not a PNG"
        expect 1 "not a trainer --log file" "$root/tools/plot-metrics" a.safetensors x.png
        # One epoch draws without gnuplot's empty-range warning; a second run
        # appended to the log is told apart and drawn alone.
        train --epochs 1 --checkpoint a1.safetensors --log one.csv >/dev/null || fail "1-epoch run"
        expect 0 "plot-metrics: wrote one.png" "$root/tools/plot-metrics" one.csv one.png
        grep -qi "warning" <<<"$out" && fail "plot-metrics warned: $out"
        expect 0 "run.csv holds 2 runs; drawing the last \(1 epoch\)" "$root/tools/plot-metrics" run.csv run2.png
    fi
    # The tiny set is easy: the last epoch must reach 100% test accuracy.
    train --epochs 10 --checkpoint b.safetensors | tee out.txt
    grep -q "epoch 10/10 .*test loss [0-9.]* acc 100.00%" out.txt || fail "tiny set not learnt"
    grep -q "peak memory [0-9]* MB" out.txt || fail "no peak memory report"
    grep -q "confusion matrix" out.txt || fail "no confusion matrix"
    expect 0 "eval: b.safetensors on mnist test \(100 images\): loss [0-9.]+ accuracy 100.00%" \
        "$trainer" eval --checkpoint b.safetensors --data-dir data
    expect 0 "digit3.png: 3 \([0-9.]+%\), [0-9] \(" "$trainer" predict --checkpoint b.safetensors data/mnist/digit3.png
    expect 0 "digit3.pgm: 3 \(" "$trainer" predict --checkpoint b.safetensors data/mnist/digit3.pgm
    # Machine-readable output: stdout is one JSON value, the same figures as the text.
    "$trainer" eval --checkpoint b.safetensors --data-dir data --json >eval.json 2>/dev/null || fail "eval --json"
    "$trainer" predict --checkpoint b.safetensors --json data/mnist/digit3.png missing.png >pred.json 2>/dev/null
    python3 - eval.json pred.json <<'PY' || fail "JSON output: $(cat eval.json pred.json)"
import json, sys
e = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2]))
assert e["images"] == 100 and abs(e["accuracy"] - 1.0) < 1e-9, e
assert len(e["classes"]) == 10 and sum(map(sum, e["confusion"])) == 100, e
assert sum(e["confusion"][k][k] for k in range(10)) == 100, e["confusion"]
assert p[0]["image"].endswith("digit3.png") and p[0]["top"][0]["class"] == "3" and len(p[0]["top"]) == 3, p
assert 0 < p[0]["top"][0]["probability"] <= 1 and "cannot open image" in p[1]["error"], p
PY
    echo "ok: eval --json and predict --json parse and agree"
    if [ -n "$root" ] && command -v gnuplot >/dev/null; then
        expect 0 "plot-metrics: wrote cm.png" "$root/tools/plot-metrics" run.csv cm.png eval.json
        [ "$(head -c 4 cm.png | tail -c 3)" = PNG ] || fail "cm.png is not a PNG"
        expect 1 "run.csv: not the output of trainer eval --json" "$root/tools/plot-metrics" run.csv x.png run.csv
    fi
    expect 1 "not-an-image.png: cannot decode image" "$trainer" predict --checkpoint b.safetensors data/mnist/not-an-image.png
    expect 1 "missing.png: cannot open image" "$trainer" predict --checkpoint b.safetensors missing.png
    head -c 300 b.safetensors >broken.safetensors
    expect 1 "broken.safetensors: header length .* does not fit" "$trainer" eval --checkpoint broken.safetensors --data-dir data
    # Best epoch and early stopping, by validation accuracy only.
    expect 2 "--save-best needs --val-split N" train --epochs 2 --save-best best.safetensors
    expect 2 "--early-stop needs --val-split N" train --epochs 2 --early-stop 2
    expect 2 "--save-best b.safetensors: give another file than --checkpoint" train --val-split 50 --save-best b.safetensors --checkpoint b.safetensors
    train --epochs 4 --val-split 100 --save-best best.safetensors --checkpoint last.safetensors | tee sb.txt >/dev/null
    expect 2 "--save-best best.safetensors: the file exists; replace it with --overwrite, or give another --save-best" \
        train --epochs 1 --val-split 100 --save-best best.safetensors --checkpoint sb2.safetensors
    be=$(grep -o "^epoch [0-9]/4 .* val loss [0-9.]* acc [0-9.]*" sb.txt |
         awk '{split($2, e, "/"); a = $NF + 0; if (a > best) {best = a; ep = e[1]}} END {print ep}')
    grep -aq "\"epoch\":\"$be\"" best.safetensors || fail "best.safetensors is not epoch $be: $(cat sb.txt)"
    grep -q "best so far: val acc .* at epoch $be, saved to best.safetensors" sb.txt || fail "no best line: $(cat sb.txt)"
    # At lr 0 nothing improves after epoch 1: stopped after 1 + 2 epochs.
    expect 0 "early stop: val accuracy has not improved for 2 epochs \(best [0-9.]+% at epoch 1\)" \
        train --epochs 10 --val-split 100 --early-stop 2 --lr 0 --checkpoint es.safetensors
    grep -q "^epoch 4/10" <<<"$out" && fail "trained past the early stop: $out"
    # Fine-tuning: b.safetensors' weights at lr 0 evaluate as b.safetensors does.
    want=$("$trainer" eval --checkpoint b.safetensors --data-dir data | grep -o "loss [0-9.]* accuracy [0-9.]*%")
    expect 0 "init: weights from b.safetensors after epoch 10; optimiser and schedule start anew" \
        "$trainer" --data-dir data --init-from b.safetensors --epochs 1 --lr 0 --checkpoint ft.safetensors
    l=$(grep -o "^epoch 1/1 .* test loss [0-9.]* acc [0-9.]*%" <<<"$out" | grep -o "test loss .*")
    [ "$l" = "test loss $(awk '{print $2}' <<<"$want") acc $(awk '{print $4}' <<<"$want")" ] ||
        fail "--init-from at lr 0 gives '$l', the checkpoint evaluates to '$want'"
    expect 2 "--init-from b.safetensors: its weights do not fit the model" "$trainer" --data-dir data --init-from b.safetensors \
        --model "flatten dense(10)" --epochs 1 --checkpoint ft2.safetensors
    # A validation split is reported as such.
    expect 0 "epoch 1/1 .* val loss" train --epochs 1 --val-split 100 --checkpoint v.safetensors
    expect 0 "^test loss [0-9.]+ acc" train --epochs 1 --val-split 100 --checkpoint v.safetensors --overwrite
    ;;
folder)
    # Your own images: the tiny set written out as PGM files in an ImageFolder
    # layout (imgs/train/<class>/N.pgm, imgs/test/<class>/N.pgm) plus digit3.png.
    python3 - data/mnist imgs <<'PY' || fail "cannot write the image folder"
import os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for split, prefix in (("train", "train"), ("test", "t10k")):
    im = open(os.path.join(src, prefix + "-images-idx3-ubyte"), "rb").read()
    lb = open(os.path.join(src, prefix + "-labels-idx1-ubyte"), "rb").read()
    n, h, w = struct.unpack(">III", im[4:16])
    for i in range(n):
        d = os.path.join(dst, split, "class%d" % lb[8 + i])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "%04d.pgm" % i), "wb") as f:
            f.write(b"P5 %d %d 255\n" % (w, h) + im[16 + i * h * w:16 + (i + 1) * h * w])
PY
    cp data/mnist/digit3.png imgs/train/class3/zz-digit3.png
    touch imgs/train/class1/.hidden
    expect 0 "model conv.* on folder:imgs \(3x12x12, 10 classes\)" "$trainer" summary --dataset folder:imgs --model "$MODEL"
    expect 0 "epoch 10/10 .*test loss [0-9.]* acc (9[0-9]|100)\.[0-9]*%" "$trainer" --dataset folder:imgs --model "$MODEL" \
        --batch 32 --seed 7 --epochs 10 --grayscale --checkpoint f.safetensors
    folder_epochs=$(grep -o "^epoch [0-9]*/10  train loss [0-9.]* acc [0-9.]*%  test loss [0-9.]* acc [0-9.]*%" <<<"$out")
    grep -q "data: folder:imgs from imgs: 401 train, 0 validation, 100 test, 1x12x12, 10 classes" <<<"$out" ||
        fail "data line: $out"
    grep -q "class3 " <<<"$out" || fail "class names not from the folders: $out"
    expect 0 "eval: f.safetensors on folder:imgs test \(100 images\)" "$trainer" eval --checkpoint f.safetensors
    expect 0 "0001.pgm: class[0-9] \(" "$trainer" predict --checkpoint f.safetensors "$(ls imgs/test/class*/0001.pgm)"
    # Another size on request; a broken file is skipped and named, or stops the run with --strict.
    cp data/mnist/not-an-image.png imgs/train/class5/broken.png
    expect 0 "not-an-image|broken.png: cannot decode image" "$trainer" summary --dataset folder:imgs --image-size 16x20 \
        --model "$MODEL"
    grep -q "3x16x20, 10 classes" <<<"$out" || fail "--image-size not applied: $out"
    expect 0 "skipped 1 unreadable file" "$trainer" --dataset folder:imgs --model "$MODEL" --epochs 1 --checkpoint g.safetensors
    expect 1 "imgs/train/class5/broken.png: cannot decode image" "$trainer" --dataset folder:imgs --model "$MODEL" \
        --epochs 1 --strict --checkpoint g.safetensors --overwrite
    mkdir -p nosplit/a nosplit/b
    expect 1 "nosplit: an image folder needs train/ and test/ inside" "$trainer" --dataset folder:nosplit --checkpoint n.safetensors
    mkdir -p imgs/test/class99
    expect 1 "imgs/test/class99: a test class with no folder in imgs/train" "$trainer" --dataset folder:imgs --checkpoint n.safetensors
    expect 2 "--dataset folder: needs a path" "$trainer" --dataset folder:
    # The same images as a list: list/train.csv and list/test.csv of path,label lines.
    rm -rf imgs/test/class99 imgs/train/class5/broken.png
    mkdir -p list
    { echo "path,label"; for f in imgs/train/class*/*; do c=${f#imgs/train/}; echo "../$f,${c%%/*}"; done; } >list/train.csv
    for f in imgs/test/class*/*; do c=${f#imgs/test/}; echo "../$f,${c%%/*}"; done >list/test.csv
    expect 0 "epoch 10/10 .*test loss [0-9.]* acc (9[0-9]|100)\.[0-9]*%" "$trainer" --dataset list:list --model "$MODEL" \
        --batch 32 --seed 7 --epochs 10 --grayscale --checkpoint l.safetensors
    grep -q "data: list:list from list: 401 train, 0 validation, 100 test, 1x12x12, 10 classes" <<<"$out" ||
        fail "list data line: $out"
    # Same images in the same order and classes as the folder: the same run.
    [ "$(grep -o "^epoch [0-9]*/10  train loss [0-9.]* acc [0-9.]*%  test loss [0-9.]* acc [0-9.]*%" <<<"$out")" = \
      "$folder_epochs" ] || fail "list and folder runs differ: $out"
    echo "../imgs/test/class1/0001.pgm,class42" >>list/test.csv
    expect 1 "list/test.csv: label 'class42' \(of list/../imgs/test/class1/0001.pgm\) is not a class of the training list" \
        "$trainer" --dataset list:list --checkpoint l2.safetensors
    mkdir -p nolist
    expect 1 "nolist: an image list needs train.csv and test.csv inside" "$trainer" --dataset list:nolist --checkpoint l2.safetensors
    echo "path,label" >nolist/train.csv
    cp list/test.csv nolist/test.csv
    expect 1 "nolist/train.csv: no images listed" "$trainer" --dataset list:nolist --checkpoint l2.safetensors
    expect 2 "--image-size: '16' is not HxW, e.g. 32x32" "$trainer" --dataset list:list --image-size 16
    expect 2 "--image-size: '0' is not a whole number in 1..4096" "$trainer" --dataset list:list --image-size 0x8
    echo "no-comma-here" >>list/train.csv
    expect 1 "list/train.csv:403: 'no-comma-here' is not path,label" "$trainer" --dataset list:list --checkpoint l2.safetensors
    # The checkpoint keeps the folder's absolute path: eval finds it from elsewhere.
    mkdir -p elsewhere
    (cd elsewhere && expect 0 "eval: $work/f.safetensors on folder:.*/imgs test \(100 images\)" \
        "$trainer" eval --checkpoint "$work/f.safetensors") || exit 1
    # Three classes of 8x8 grey images told apart by brightness, 40 training
    # and 10 test images each, read class after class.
    python3 - shapes <<'PY' || fail "cannot write the shapes folder"
import os, random, sys
rng = random.Random(3)
for split, n in (("train", 40), ("test", 10)):
    for k, name in enumerate(("circle", "square", "triangle")):
        d = os.path.join(sys.argv[1], split, name)
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            px = bytes(min(255, max(0, 40 + 90 * k + rng.randint(-20, 20))) for _ in range(64))
            open(os.path.join(d, "%02d.pgm" % i), "wb").write(b"P5 8 8 255\n" + px)
PY
    SMALL="conv(4,3,pad=1) relu flatten dense(3)"
    shapes() { "$trainer" --dataset folder:shapes --model "$SMALL" --grayscale --epochs 1 "$@"; }
    # Subsets are seeded random images of every class, not the first or last N.
    expect 0 "images per class: train 30-30, validation 10-10, test 10-10" shapes --val-split 30 --checkpoint v1.safetensors --threads 1
    OMP_NUM_THREADS=3 expect 0 "images per class: train 30-30, validation 10-10" shapes --val-split 30 --checkpoint v3.safetensors
    cmp v1.safetensors v3.safetensors || fail "--val-split: 1 and 3 threads differ"
    expect 0 "images per class: train 30-30, validation 10-10" shapes --val-split 30 --checkpoint v4.safetensors --seed 4
    ! cmp -s v1.safetensors v4.safetensors || fail "--val-split: seeds 1 and 4 gave the same run"
    expect 0 "images per class: train 20-20, test 10-10" shapes --limit-train 60 --checkpoint l60.safetensors
    # The default checkpoint is a file here named after the folder, whatever path names it.
    mkdir -p sub && mv shapes sub/shapes
    expect 0 "checkpoint: cnnc-folder-shapes-custom-[0-9a-f]{8}.safetensors" "$trainer" --dataset folder:./sub/shapes/ \
        --model "$SMALL" --grayscale --epochs 1 --limit-train 30
    ls cnnc-folder-shapes-custom-*.safetensors >/dev/null || fail "no default checkpoint named after the folder"
    mv sub/shapes shapes
    expect 0 "images per class: train 40-40, test 5-5" "$trainer" eval --checkpoint l60.safetensors --limit-test 15
    for c in circle square triangle; do
        grep -qE "^  $c +[0-9.]+ +[0-9.]+ +[0-9.]+ +5$" <<<"$out" || fail "eval --limit-test 15: $c lacks support 5: $out"
    done
    # UTF-8 class names are cut at a character boundary in the tables.
    long="xéééééééééééééé"  # 15 characters, 29 bytes
    cp -r shapes utf
    mv utf/train/triangle "utf/train/$long"
    mv utf/test/triangle "utf/test/$long"
    expect 0 "^  xééééééééééééé +[0-9.]+ " "$trainer" eval --checkpoint l60.safetensors --dataset folder:utf
    python3 -c 'import sys; sys.stdin.buffer.read().decode("utf-8")' <<<"$out" || fail "eval cut a UTF-8 name: $out"
    # An empty class folder is refused by name; an unreadable first image is named once.
    mkdir shapes/train/zebra
    expect 1 "cnnc: shapes/train/zebra: class folder has no images" shapes --checkpoint z.safetensors
    rmdir shapes/train/zebra
    cp data/mnist/not-an-image.png shapes/train/circle/0-broken.png
    expect 0 "skipped 1 unreadable file" "$trainer" summary --dataset folder:shapes --model "$SMALL"
    [ "$(grep -c "0-broken.png: cannot decode image" <<<"$out")" -eq 1 ] || fail "the broken first image is not named once: $out"
    ;;
threads)
    expect 0 "cnnc .* trainer: 3 OpenMP threads" train --epochs 1 --threads 3 --checkpoint t3.safetensors
    OMP_NUM_THREADS=1 expect 0 "trainer: 1 OpenMP thread \(" train --epochs 1 --checkpoint t1.safetensors
    OMP_NUM_THREADS=1 expect 0 "trainer: 2 OpenMP threads" train --epochs 1 --threads 2 --checkpoint t2.safetensors
    # The same seed gives the same bytes at any thread count.
    cmp t1.safetensors t2.safetensors || fail "1 and 2 threads differ"
    cmp t1.safetensors t3.safetensors || fail "1 and 3 threads differ"
    echo "ok: checkpoints identical at 1, 2 and 3 threads"
    # The same under every kernel backend this CPU runs (each against itself).
    expect 0 "trainer: kernels reference \(.*; forced\)" train --epochs 1 --kernels reference --checkpoint r1.safetensors
    CNNC_KERNELS=reference expect 0 "trainer: kernels reference \(.*set by CNNC_KERNELS\)" \
        train --epochs 1 --threads 3 --checkpoint r3.safetensors
    cmp r1.safetensors r3.safetensors || fail "reference kernels: 2 and 3 threads differ"
    expect 0 "trainer: kernels [a-z0-9]+ \(.*the best this CPU runs\); 3x3 convolutions: (direct.*|winograd F\(4x4, 3x3\)|auto \(Winograd where measured faster\))$" train --epochs 1 --kernels auto --checkpoint a2.safetensors
    cmp t2.safetensors a2.safetensors || fail "--kernels auto differs from the default"
    # Both convolution algorithms, each at 1 and 3 threads; auto is Winograd on
    # the second convolution (8 -> 8 channels) where the kernels have it.
    expect 0 "3x3 convolutions: direct" train --epochs 1 --conv direct --checkpoint d1.safetensors --threads 1
    CNNC_CONV=direct train --epochs 1 --threads 3 --checkpoint d3.safetensors >/dev/null || fail "CNNC_CONV=direct"
    cmp d1.safetensors d3.safetensors || fail "direct convolutions: 1 and 3 threads differ"
    out=$(train --epochs 1 --conv winograd --threads 3 --checkpoint w3.safetensors) || fail "--conv winograd"
    train --epochs 1 --conv winograd --threads 1 --checkpoint w1.safetensors >/dev/null || fail "--conv winograd, 1 thread"
    cmp w1.safetensors w3.safetensors || fail "Winograd convolutions: 1 and 3 threads differ"
    if grep -q "3x3 convolutions: winograd F(4x4" <<<"$out"; then
        cmp -s d1.safetensors w1.safetensors && fail "--conv direct and winograd gave the same bytes (Winograd did not run?)"
        cmp -s d1.safetensors t1.safetensors && fail "the default (auto) gave direct's bytes (Winograd did not run?)"
    fi
    echo "ok: reference kernels identical at 2 and 3 threads; auto is the default; the same for --conv direct and winograd"
    ;;
resume)
    train --epochs 3 --augment --checkpoint straight.safetensors >/dev/null || fail "straight run"
    train --epochs 1 --augment --checkpoint part.safetensors >/dev/null || fail "first epoch"
    expect 0 "resume: part.safetensors after epoch 1;" "$trainer" --resume part.safetensors --epochs 3 --data-dir data
    cmp straight.safetensors part.safetensors || fail "resumed run differs from the uninterrupted one"
    # The log and the test subset go on after a resume without being given again.
    train --epochs 1 --log lt.csv --limit-test 50 --checkpoint lt.safetensors >/dev/null || fail "logged first epoch"
    expect 0 "data: .* 50 test" "$trainer" --resume lt.safetensors --epochs 2 --data-dir data
    [ "$(wc -l <lt.csv)" -eq 3 ] || fail "the resumed run did not go on logging to lt.csv: $(cat lt.csv)"
    sed -n 3p lt.csv | grep -q "; resumed_from=lt.safetensors\"$" || fail "the resumed row does not say so: $(sed -n 3p lt.csv)"
    # Settings of the run cannot be changed on resume: refused, not ignored.
    expect 2 "--resume part.safetensors: --lr cannot change a resumed run" "$trainer" --resume part.safetensors --lr 0.1 --data-dir data
    expect 2 "--resume part.safetensors: --model cannot change a resumed run" "$trainer" --resume part.safetensors --model lenet --data-dir data
    cmp straight.safetensors part.safetensors || fail "a refused resume changed the checkpoint"
    echo "ok: resume at an epoch boundary is bit-identical"
    # Settings that are not the defaults must come back from the checkpoint:
    # an optimiser, its lr, momentum, Nesterov and weight decay, a schedule
    # with warm-up, and another step schedule with its gamma.
    # (Cosine depends on --epochs, so it is resumed mid-run in the sigint case.)
    for opts in "--optimizer sgd --lr 0.05 --momentum 0.8 --nesterov --weight-decay 0.001 --warmup 5" \
                "--optimizer adamw --lr 0.003 --weight-decay 0.05 --schedule step --step-epochs 1 --gamma 0.5" \
                "--optimizer sgd --lr 0.05 --nesterov --weight-decay 0.01 --no-decay-bn-bias --label-smoothing 0.1 --tta" \
                "--ema 0.9 --tta" \
                "--precision bf16 --optimizer sgd --lr 0.05" \
                "--augment --crop-pad 2 --reflect-pad --hflip-alternate --tta-shift --warmup 40 --lr-start 0.3"; do
        # shellcheck disable=SC2086
        train --epochs 3 $opts --checkpoint s.safetensors --overwrite >/dev/null || fail "straight run: $opts"
        # shellcheck disable=SC2086
        train --epochs 1 $opts --checkpoint p.safetensors --overwrite >/dev/null || fail "first epoch: $opts"
        "$trainer" --resume p.safetensors --epochs 3 --data-dir data >/dev/null || fail "resume: $opts"
        cmp s.safetensors p.safetensors || fail "resumed run differs with $opts"
        echo "ok: resume bit-identical with $opts"
    done
    # A model whose first layer is whitened from the data (once, in the new
    # run; the resumed one loads it) and with frozen and scaled parameters.
    WHITE="conv(k=2,init=whiten,weight_lr=0) gelu conv(8,3,bias=0,init=dirac) bn(weight_lr=0,bias_lr=4) gelu flatten dense(10) mul(0.5)"
    # The whitening bias freezes after epoch 2 (after the resume) and each
    # epoch drops its last partial batch (400 = 12 x 32 + 16).
    wflags="--optimizer sgd --lr 0.05 --whiten-bias-epochs 2 --drop-last"
    # shellcheck disable=SC2086
    MODEL=$WHITE expect 0 "whiten: 1 layer from the patches of 400 training images" \
        train --epochs 3 $wflags --checkpoint ws.safetensors
    grep -q "3 epochs of 12 steps" <<<"$out" || fail "--drop-last: not 12 steps an epoch: $out"
    # shellcheck disable=SC2086
    MODEL=$WHITE train --epochs 1 $wflags --checkpoint wp.safetensors >/dev/null || fail "whitened run"
    expect 0 "resume: wp.safetensors after epoch 1" "$trainer" --resume wp.safetensors --epochs 3 --data-dir data
    grep -q "whiten:" <<<"$out" && fail "the resumed run whitened again: $out"
    cmp ws.safetensors wp.safetensors || fail "resumed whitened run differs"
    # Without the freeze, the same run ends elsewhere.
    MODEL=$WHITE train --epochs 3 --optimizer sgd --lr 0.05 --drop-last --checkpoint wt.safetensors >/dev/null ||
        fail "whitened run, bias trained throughout"
    ! cmp -s ws.safetensors wt.safetensors || fail "--whiten-bias-epochs changed nothing"
    echo "ok: resume bit-identical with a whitened, partly frozen model, --whiten-bias-epochs and --drop-last"
    # The recipe flags change the run (each alone against the same run without it).
    base="--optimizer sgd --lr 0.05 --nesterov --weight-decay 0.01"
    for flag in "--no-decay-bn-bias" "--label-smoothing 0.1" "--lookahead 2" "--warmup 9 --lr-start 0.5" "--drop-last" \
        "--precision bf16"; do
        # shellcheck disable=SC2086
        train --epochs 1 $base --checkpoint b.safetensors --overwrite >/dev/null || fail "base run"
        # shellcheck disable=SC2086
        train --epochs 1 $base $flag --checkpoint f.safetensors --overwrite >/dev/null || fail "run with $flag"
        ! cmp -s b.safetensors f.safetensors || fail "$flag changed nothing"
    done
    # Flip test-time augmentation: another loss, in train and in eval.
    train --epochs 1 --log plain.csv --checkpoint b.safetensors --overwrite >/dev/null || fail "run without --tta"
    train --epochs 1 --log tta.csv --tta --checkpoint f.safetensors --overwrite >/dev/null || fail "run with --tta"
    [ "$(sed -n 2p plain.csv | cut -d, -f6)" != "$(sed -n 2p tta.csv | cut -d, -f6)" ] || fail "--tta: same eval loss"
    expect 0 "accuracy" "$trainer" eval --checkpoint f.safetensors --data-dir data --tta
    tta_loss=$(grep -oE "loss [0-9.]+" <<<"$out")
    expect 0 "accuracy" "$trainer" eval --checkpoint f.safetensors --data-dir data
    plain_loss=$(grep -oE "loss [0-9.]+" <<<"$out")
    [ "$plain_loss" != "$tta_loss" ] || fail "eval --tta: same loss as without"
    # ... and the same weights (only the metadata says tta=1).
    expect 0 "accuracy" "$trainer" eval --checkpoint b.safetensors --data-dir data
    [ "$(grep -oE "loss [0-9.]+" <<<"$out")" = "$plain_loss" ] || fail "--tta changed the training, not only its evaluation"
    # --ema: the same training, evaluated (in train and eval) with the average.
    train --epochs 1 --log ema.csv --ema 0.9 --checkpoint e.safetensors >/dev/null || fail "run with --ema"
    [ "$(sed -n 2p plain.csv | cut -d, -f6)" != "$(sed -n 2p ema.csv | cut -d, -f6)" ] || fail "--ema: same eval loss"
    expect 0 "accuracy" "$trainer" eval --checkpoint e.safetensors --data-dir data
    [ "$(grep -oE "loss [0-9.]+" <<<"$out")" != "$plain_loss" ] || fail "eval of an --ema checkpoint used the raw weights"
    expect 0 "loss $(printf %.4f "$(sed -n 2p ema.csv | cut -d, -f6)")" "$trainer" eval --checkpoint e.safetensors \
        --data-dir data
    echo "ok: --no-decay-bn-bias, --label-smoothing, --tta and --ema"
    ;;
sigint)
    # Ctrl-C mid-run: exit 130, a checkpoint that resumes to the same final weights.
    # A heavier model, so that an epoch lasts long enough to be interrupted inside.
    BIG="conv(32,3,pad=1) relu conv(32,3,pad=1) relu maxpool(2) flatten dense(10)"
    "$trainer" --data-dir data --model "$BIG" --batch 16 --seed 7 --epochs 5 --checkpoint straight.safetensors \
        >straight.out || fail "straight run"
    # The program itself in the background (a shell function there would be a
    # subshell, and those ignore SIGINT); interrupted once epoch 2 has started.
    "$trainer" --data-dir data --model "$BIG" --batch 16 --seed 7 --epochs 5 --checkpoint int.safetensors \
        >int.out 2>&1 &
    pid=$!
    for _ in $(seq 600); do grep -q "^epoch 1/5" int.out && break; sleep 0.05; done
    kill -INT $pid
    wait $pid
    rc=$?
    [ "$rc" -eq 130 ] || fail "interrupted trainer exited $rc, expected 130: $(cat int.out)"
    grep -q "trainer: stopping after the current batch or evaluation" int.out || fail "no feedback on SIGINT: $(cat int.out)"
    grep -q "interrupted at epoch [0-9]*, batch [0-9]*; checkpoint written to int.safetensors" int.out ||
        fail "no interruption message: $(cat int.out)"
    # The resume names the same position as the interruption did.
    at=$(grep -o 'interrupted at epoch [0-9]*, batch [0-9]*' int.out)
    expect 0 "resume: int.safetensors ${at#interrupted }; settings" "$trainer" --resume int.safetensors --data-dir data
    # The interrupted epoch reports the whole epoch's train loss and accuracy, as the straight run does.
    e=$(grep -o 'interrupted at epoch [0-9]*' int.out | grep -o '[0-9]*$')
    want=$(grep -o "^epoch $e/5  train loss [0-9.]* acc [0-9.]*%" straight.out)
    grep -q "^$want" <<<"$out" || fail "resumed epoch $e reports otherwise than '$want': $out"
    cmp straight.safetensors int.safetensors || fail "interrupted+resumed run differs from the uninterrupted one"
    echo "ok: SIGINT exit 130 ($(grep -o 'interrupted at epoch [0-9]*, batch [0-9]*' int.out)), resumed run bit-identical"
    # SIGTERM (timeout, Slurm, systemd, docker stop) and SIGHUP: the same, with 128 + the signal;
    # here with SGD on a cosine schedule, and with airbench94's schedule and Lookahead (both
    # depend on the run's length), which the resumed run must continue exactly.
    COS="--optimizer sgd --lr 0.02 --momentum 0.7 --schedule cosine --warmup 3"
    AIR="--optimizer sgd --lr 0.02 --momentum 0.85 --nesterov --schedule linear --warmup 5 --lr-start 0.2 --lr-end 0.07 --lookahead 3"
    for run in cos air; do
        opts=$COS; [ "$run" = air ] && opts=$AIR
        # shellcheck disable=SC2086
        "$trainer" --data-dir data --model "$BIG" --batch 16 --seed 7 --epochs 5 $opts --checkpoint $run.safetensors \
            >/dev/null || fail "straight $run run"
    done
    for case in TERM:143:cos HUP:129:cos TERM:143:air; do
        sig=${case%:*} run=${case##*:}
        opts=$COS; [ "$run" = air ] && opts=$AIR
        # shellcheck disable=SC2086
        "$trainer" --data-dir data --model "$BIG" --batch 16 --seed 7 --epochs 5 $opts --checkpoint "$sig-$run.safetensors" \
            >sig.out 2>&1 &
        pid=$!
        for _ in $(seq 600); do grep -q "^epoch 1/5" sig.out && break; sleep 0.05; done
        kill -"${sig%:*}" $pid
        wait $pid
        rc=$?
        [ "$rc" -eq "${sig#*:}" ] || fail "SIG${sig%:*}: exit $rc, expected ${sig#*:}: $(cat sig.out)"
        grep -q "stopped by SIG${sig%:*} at epoch [0-9]*, batch [0-9]*; checkpoint written to $sig-$run.safetensors" sig.out ||
            fail "no SIG${sig%:*} message: $(cat sig.out)"
        expect 0 "accuracy" "$trainer" eval --checkpoint "$sig-$run.safetensors" --data-dir data
        "$trainer" --resume "$sig-$run.safetensors" --data-dir data >/dev/null || fail "resume after SIG${sig%:*}"
        cmp "$run.safetensors" "$sig-$run.safetensors" || fail "SIG${sig%:*}: the resumed $run run differs"
        echo "ok: SIG${sig%:*} mid-run ($(grep -o 'at epoch [0-9]*, batch [0-9]*' sig.out)), resumed $run run bit-identical"
    done
    ;;
failures)
    # Every row of the README's failure table, through the program.
    train --epochs 2 --checkpoint good.safetensors >/dev/null || fail "baseline run"
    cp good.safetensors keep.safetensors
    # Divergence: a NaN weight after step 10 (epoch 2 of 7-step epochs at batch 64).
    CNNC_FAULT_NAN_AT_STEP=10 expect 1 "training diverged at epoch 2, batch 5: loss is nan; keep.safetensors keeps the last good epoch" \
        "$trainer" --data-dir data --model "$MODEL" --epochs 3 --checkpoint keep.safetensors --overwrite
    expect 0 "accuracy" "$trainer" eval --checkpoint keep.safetensors --data-dir data
    grep -aq '"epoch":"1"' keep.safetensors || fail "the kept checkpoint is not the epoch-1 one"
    # Unwritable output folder, and a full disk (a file size limit makes write() fail with EFBIG).
    expect 2 "/proc/cnnc.safetensors: cannot create files in /proc" train --epochs 1 --checkpoint /proc/cnnc.safetensors
    expect 2 "nodir/x.safetensors: cannot create files in nodir: No such file or directory" train --epochs 1 --checkpoint nodir/x.safetensors
    # Divergence in the first epoch: no checkpoint of this run exists, and the message says so.
    CNNC_FAULT_NAN_AT_STEP=1 expect 1 "training diverged at epoch 1, batch 3: loss is nan; no checkpoint was written" \
        "$trainer" --data-dir data --model "$MODEL" --epochs 3 --checkpoint never.safetensors
    [ -e never.safetensors ] && fail "a diverged first epoch left a checkpoint"
    cp good.safetensors full.safetensors
    (ulimit -f 8; trap '' XFSZ; exec "$trainer" --data-dir data --model "$MODEL" --batch 32 --seed 7 --epochs 1 \
        --checkpoint full.safetensors --overwrite) >full.out 2>&1
    rc=$?
    [ "$rc" -eq 1 ] || fail "disk full: exit $rc, expected 1: $(cat full.out)"
    grep -q "full.safetensors: cannot write checkpoint: File too large (the previous file, if any, is untouched)" full.out ||
        fail "disk full message: $(cat full.out)"
    cmp good.safetensors full.safetensors || fail "disk full: the previous checkpoint changed"
    ls ./*.tmp.* 2>/dev/null && fail "temporary files left behind"
    echo "ok: full disk leaves the previous checkpoint intact"
    # Memory: a batch whose buffers cannot fit is refused before allocating.
    expect 1 "model needs [0-9]+ MB at batch 65536 but the limit is [0-9]+ MB \(90% of this machine.s memory\)" \
        "$trainer" --data-dir data --model "conv(4096,3,pad=1) relu flatten dense(10)" --batch 65536
    # Broken data files name the file and the problem.
    mkdir -p bad/mnist
    cp data/mnist/*-ubyte bad/mnist/
    head -c 1000 data/mnist/train-images-idx3-ubyte >bad/mnist/train-images-idx3-ubyte
    expect 1 "bad/mnist/train-images-idx3-ubyte: .*(truncated|short|expected)" "$trainer" --data-dir bad --model "$MODEL"
    cp data/mnist/train-images-idx3-ubyte bad/mnist/
    gzip -c data/mnist/train-labels-idx1-ubyte >bad/mnist/train-labels-idx1-ubyte
    expect 1 "bad/mnist/train-labels-idx1-ubyte: .*gzip" "$trainer" --data-dir bad --model "$MODEL"
    cp data/mnist/train-labels-idx1-ubyte bad/mnist/
    printf '\x0c' | dd of=bad/mnist/train-labels-idx1-ubyte bs=1 seek=20 conv=notrunc status=none
    expect 1 "bad/mnist/train-labels-idx1-ubyte: label 12 at record 12" "$trainer" --data-dir bad --model "$MODEL"
    # Resume metadata that parses as JSON but makes no sense.
    sed 's/"hflip":"0"/"hflip":"3"/' good.safetensors >badflip.safetensors
    expect 1 "badflip.safetensors: checkpoint metadata 'hflip' is '3', not a whole number in 0..2" \
        "$trainer" --resume badflip.safetensors --data-dir data
    sed 's/"gamma":"0.1"/"gamma":"7.0"/' good.safetensors >badgamma.safetensors  # same length
    expect 1 "badgamma.safetensors: checkpoint metadata 'gamma' is '7.0', not a number in \[0, 1\]" \
        "$trainer" --resume badgamma.safetensors --data-dir data
    # The recipe's keys, each out of its range (same lengths: the header's size stays).
    for kv in 'ema:2:not a number in \[0, 0.99999\]' 'lookahead:x:not a whole number in 0..1000000' \
        'lr_start:5:not a number in \[0, 1\]' 'lr_end:-:not a number in \[0, 1\]' 'reflect_pad:7:not a whole number in 0..1'; do
        key=${kv%%:*} rest=${kv#*:}
        val=${rest%%:*} why=${rest#*:}
        grep -aq "\"$key\":\"0\"" good.safetensors || fail "good.safetensors has no $key of 0"
        sed "s/\"$key\":\"0\"/\"$key\":\"$val\"/" good.safetensors >badkey.safetensors
        expect 1 "badkey.safetensors: checkpoint metadata '$key' is '$val', $why" \
            "$trainer" --resume badkey.safetensors --data-dir data
    done
    sed 's/"batch":"32"/"batch":"0x"/' good.safetensors >badmeta.safetensors
    expect 1 "badmeta.safetensors: checkpoint metadata 'batch' is '0x', not a whole number" \
        "$trainer" --resume badmeta.safetensors --data-dir data
    printf 'junk' >bad.safetensors
    expect 1 "bad.safetensors: 4 bytes is too short" "$trainer" eval --checkpoint bad.safetensors --data-dir data
    expect 1 "bad.safetensors: 4 bytes is too short" "$trainer" --resume bad.safetensors --data-dir data
    ;;
crash)
    # SIGKILL at random moments, checkpoint writes included: the file on disk always
    # loads and holds a completed epoch, and resuming ends with the uninterrupted weights.
    train --epochs 40 --checkpoint straight.safetensors >/dev/null || fail "straight run"
    "$trainer" --data-dir data --model "$MODEL" --batch 32 --seed 7 --epochs 40 --checkpoint k.safetensors >/dev/null 2>&1 &
    pid=$!
    sleep 0.05
    kill -9 $pid
    wait $pid 2>/dev/null
    kills=1
    while :; do
        if [ -e k.safetensors ]; then
            "$trainer" eval --checkpoint k.safetensors --data-dir data >/dev/null 2>&1 || fail "checkpoint unreadable after kill $kills"
            grep -aq '"batch_in_epoch":"0"' k.safetensors || fail "checkpoint after kill $kills is not at an epoch boundary"
            cmd=("$trainer" --resume k.safetensors --data-dir data)
        else
            # (A run may end before its kill: the last command then runs it again.)
            cmd=("$trainer" --data-dir data --model "$MODEL" --batch 32 --seed 7 --epochs 40 --checkpoint k.safetensors
                --overwrite)
        fi
        [ "$kills" -ge 8 ] && break
        "${cmd[@]}" >/dev/null 2>&1 &
        pid=$!
        sleep "0.$((RANDOM % 9 + 1))"
        kill -9 $pid 2>/dev/null && kills=$((kills + 1))
        wait $pid 2>/dev/null
        grep -aq '"epoch":"40"' k.safetensors 2>/dev/null && break
    done
    "${cmd[@]}" >/dev/null 2>&1 || fail "final resume failed"
    cmp straight.safetensors k.safetensors || fail "after $kills kills the resumed run differs from the uninterrupted one"
    ls ./*.tmp.* 2>/dev/null && echo "note: a killed write left a temporary file (harmless; the target is intact)"
    echo "ok: $kills SIGKILLs, checkpoint always loadable, final weights bit-identical"
    ;;
*)
    fail "unknown case $case_name"
    ;;
esac
