#!/usr/bin/python3
"""airbench94's whole recipe (Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on
a single GPU") in PyTorch on the CPU, float32: the reference that cnnc's
airbench94 runs are compared with on the same data.

    /usr/bin/python3 tools/torch_airbench.py [--data-root data] [--threads 2]
        [--epochs 9.9] [--seed 1] [--limit-train N] [--json]

What it does, in the published recipe's terms (hyperparameters as published):
  * data: pixels / 255, normalised by CIFAR-10's channel means and deviations;
    every image flipped at random once, then all of them flipped together on
    odd epochs; a random translation of up to 2 pixels (reflect padding) each
    epoch; batches of 1024 in a new order each epoch, the last partial one
    dropped;
  * net: tools/torch_peer.py's Airbench94 (2x2 whitening conv set from the
    patch covariance of the first 5,000 training images, eps 5e-4, weights
    frozen, its bias trained for the first 3 epochs only; three conv groups
    of 64, 256, 256 channels with dirac-initialised convolutions and batch
    norms of frozen scale, eps 1e-12, momentum 0.4; logits times 1/9);
  * loss: cross-entropy with label smoothing 0.2, summed over the batch;
  * SGD with Nesterov momentum 0.85, lr 11.5 and weight decay 0.0153 "per
    1024 images" in the recipe's decoupled form, batch-norm biases at 64x
    the learning rate; a triangular schedule 0.2 -> 1 (at 23%) -> 0.07;
  * Lookahead from epoch 3: every 5 steps the weights move to an average whose
    decay grows as (step/total)^3;
  * evaluation: plain, and with the recipe's test-time augmentation (the image
    and its mirror, each also shifted one pixel up-left and down-right).
Prints one line per epoch and, with --json, one JSON line of results.
"""
import argparse
import json
import math
import os
import sys
import time

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--data-root", default="data")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--epochs", type=float, default=9.9)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--limit-train", type=int, default=0)
p.add_argument("--json", action="store_true")
a = p.parse_args()
os.environ["OMP_NUM_THREADS"] = str(a.threads)
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
BATCH, MOMENTUM, LR, WD, BIAS_SCALER = 1024, 0.85, 11.5, 0.0153, 64.0
WHITEN_BIAS_EPOCHS, LOOKAHEAD_FROM, LOOKAHEAD_EVERY = 3, 3, 5
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


# torch_peer reads its command line when imported: give it ours.
argv, sys.argv = sys.argv, [sys.argv[0], "--threads", str(a.threads), "--blas-threads", "1"]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_peer  # noqa: E402
sys.argv = argv


def normalised(x, y):
    x = torch.from_numpy(x.astype(np.float32) / 255.0)
    return (x - MEAN) / STD, torch.from_numpy(y.astype(np.int64))


def net_of(whiten_from):
    net = torch_peer.Airbench94(3, 32)
    net[0].bias.data.zero_()  # as the recipe's convolutions start
    # Whitening: eigenvectors of the 2x2 patches' covariance, scaled by
    # 1/sqrt(eigenvalue + eps), and their negatives; largest first.
    patches = whiten_from.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    cov = patches.T @ patches / patches.shape[0]
    val, vec = torch.linalg.eigh(cov)
    val, vec = val.flip(0), vec.T.flip(0)
    w = (vec / torch.sqrt(val + 5e-4).view(-1, 1)).reshape(12, 3, 2, 2).float()
    net[0].weight.data.copy_(torch.cat([w, -w]))
    return net


def triangle(step, total, start=0.2, peak=0.23, end=0.07):
    top = int(peak * total)
    if step < top:
        return start + (1 - start) * step / top
    return 1 + (end - 1) * (step - top) / (total - top)


def translate(x, r=2):
    padded = F.pad(x, (r,) * 4, mode="reflect")
    out = torch.empty_like(x)
    shifts = torch.randint(0, 2 * r + 1, (x.shape[0], 2))
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            m = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[m] = padded[m, :, dy:dy + 32, dx:dx + 32]
    return out


def evaluate(net, x, y, tta):
    net.eval()
    outs = []
    with torch.no_grad():
        for xb in x.split(500):
            mirror = lambda v: 0.5 * net(v) + 0.5 * net(v.flip(-1))  # noqa: E731
            if not tta:
                outs.append(net(xb))
                continue
            pad = F.pad(xb, (1,) * 4, mode="reflect")
            shifted = 0.5 * mirror(pad[:, :, 0:32, 0:32]) + 0.5 * mirror(pad[:, :, 2:34, 2:34])
            outs.append(0.5 * mirror(xb) + 0.5 * shifted)
    net.train()
    return (torch.cat(outs).argmax(1) == y).float().mean().item()


def main():
    t0 = time.time()
    xtr, ytr, xte, yte = torch_peer.load_cifar10(a.data_root)
    (xtr, ytr), (xte, yte) = normalised(xtr, ytr), normalised(xte, yte)
    if a.limit_train:
        xtr, ytr = xtr[:a.limit_train], ytr[:a.limit_train]
    net = net_of(xtr[:5000])
    flip = torch.rand(len(xtr)) < 0.5
    xtr = torch.where(flip.view(-1, 1, 1, 1), xtr.flip(-1), xtr)

    kilostep = BATCH * (1 + 1 / (1 - MOMENTUM))  # Nesterov's steady-state step gain, times 1024
    lr, wd = LR / kilostep, WD * BATCH / kilostep
    norm_biases = [q for n, q in net.named_parameters() if q.requires_grad and isinstance(
        net[int(n.split(".")[0])], nn.BatchNorm2d)]
    others = [q for q in net.parameters() if q.requires_grad and all(q is not b for b in norm_biases)]
    opt = torch.optim.SGD([dict(params=norm_biases, lr=lr * BIAS_SCALER, weight_decay=wd / (lr * BIAS_SCALER)),
                           dict(params=others, lr=lr, weight_decay=wd / lr)], momentum=MOMENTUM, nesterov=True)
    base = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = len(xtr) // BATCH
    total = math.ceil(steps_per_epoch * a.epochs)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="none")
    step, avg, per_epoch = 0, None, []
    for epoch in range(math.ceil(a.epochs)):
        te = time.time()
        net[0].bias.requires_grad = epoch < WHITEN_BIAS_EPOCHS
        x = translate(xtr)
        if epoch % 2 == 1:
            x = x.flip(-1)
        order = torch.randperm(len(x))
        correct = seen = 0
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[i * BATCH:(i + 1) * BATCH]
            for g, b in zip(opt.param_groups, base):
                g["lr"] = b * triangle(step, total)
            out = net(x[idx])
            loss = loss_fn(out, ytr[idx]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            correct += (out.argmax(1) == ytr[idx]).sum().item()
            seen += len(idx)
            if epoch >= LOOKAHEAD_FROM and step % LOOKAHEAD_EVERY == 0:
                state = net.state_dict()
                if avg is None:
                    avg = {k: v.clone() for k, v in state.items() if v.dtype == torch.float32}
                else:
                    rho = 0.95 ** LOOKAHEAD_EVERY * (step / total) ** 3
                    for k, v in avg.items():
                        v.lerp_(state[k], 1 - rho)
                        state[k].copy_(v)
        if avg is not None:  # the weights take the average at the end of each epoch
            state = net.state_dict()
            for k, v in avg.items():
                state[k].copy_(v)
        per_epoch.append(dict(epoch=epoch + 1, steps=step, train_acc=round(correct / max(seen, 1), 4),
                              loss=round(loss.item() / BATCH, 4), seconds=round(time.time() - te, 1)))
        print(json.dumps(per_epoch[-1]), flush=True)
    train_s = time.time() - t0
    acc, acc_tta = evaluate(net, xte, yte, False), evaluate(net, xte, yte, True)
    res = dict(recipe="airbench94", torch=torch.__version__, threads=a.threads, epochs=a.epochs, steps=step,
               seed=a.seed, n_train=len(xtr), test_acc=round(acc, 4), test_acc_tta=round(acc_tta, 4),
               train_seconds=round(train_s, 1), total_seconds=round(time.time() - t0, 1), per_epoch=per_epoch)
    print(json.dumps(res) if a.json else "test accuracy %.4f, with TTA %.4f, %.0f s of training" % (
        acc, acc_tta, train_s), flush=True)


if __name__ == "__main__":
    main()
