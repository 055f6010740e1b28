#!/usr/bin/python3
"""Writes tests/fixtures/reference_net.txt: a tiny network's inputs, PyTorch
parameters, logits, loss, gradients, and the parameters and batch-norm running
statistics after 10 Adam steps; and tests/fixtures/reference_residual.txt, the
same for a small residual graph (identity, option-A and projection shortcuts,
a concat), with its state_dict names and shapes in reference_residual_names.txt.
test_reference.c compares cnnc against them.

The first conv has no bias: before batch norm its gradient is rounding noise
(~1e-9) that Adam would amplify into +-lr steps of arbitrary sign.

And tests/fixtures/reference_recipe.txt: airbench94's pieces (a whitening-style
conv with frozen weights, GELU, batch norm with a frozen scale and its shift at
64x the learning rate, logits times 1/9), trained 10 steps by SGD with
Nesterov momentum, weight decay, PyTorch parameter groups and label smoothing.

Run from the project root with Debian's python3-torch:
    /usr/bin/python3 tools/make_reference.py [net] [residual] [recipe]
(all three without arguments).
Each line is `name count v1 v2 ...` (float32 values printed with %.9g).
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

WANT = sys.argv[1:] or ["net", "residual", "recipe"]

# Must match DESC in tests/test_reference.c.
DESC = "conv(5,3,pad=1,bias=0) bn relu maxpool(2) conv(6,3,stride=2,pad=1) relu avgpool(2) flatten dense(8) relu dense(3)"

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(5, 6, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2),
    nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
B = 4
x = torch.randn(B, 3, 9, 9)
y = torch.tensor([0, 2, 1, 2])

def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts])


def write_fixture(path, model, x, y, make_opt=None, smoothing=0.0, after="params_after_10_adam"):
    """The model's parameters, logits, loss and gradients on (x, y), then
    after 10 steps (Adam, lr 1e-2, unless make_opt gives another) its
    parameters, the running statistics of every batch norm (mean then
    variance, in module order) and eval-mode logits."""
    rows = []

    def put(name, t):
        v = t.detach().reshape(-1).tolist()
        rows.append("%s %d %s" % (name, len(v), " ".join("%.9g" % f for f in v)))

    put("desc_check", torch.tensor([float(sum(p.numel() for p in model.parameters()))]))
    put("x", x)
    put("labels", y.float())
    put("params", flat(model.parameters()))
    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
    loss.backward()
    put("logits", logits)
    put("loss", loss.reshape(1))
    put("grads", flat(p.grad for p in model.parameters()))
    opt = make_opt(model) if make_opt else torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        opt.zero_grad()
        F.cross_entropy(model(x), y, label_smoothing=smoothing).backward()
        opt.step()
    put(after, flat(model.parameters()))
    bns = [mod for mod in model.modules() if isinstance(mod, nn.BatchNorm2d)]
    put("running_after_11", torch.cat([torch.cat([b.running_mean, b.running_var]) for b in bns]))
    model.eval()
    put("eval_logits", model(x))
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    print("wrote", path + ":", len(rows), "tensors")


if "net" in WANT:
    write_fixture("tests/fixtures/reference_net.txt", model, x, y)

# ---------------------------------------------------------------- a residual graph
# Must match RESIDUAL_DESC in tests/test_reference.c. Modules are registered
# under cnnc's layer indices, so the state_dict names are cnnc's.
RESIDUAL_DESC = ("conv(8,3,pad=1,bias=0) bn relu @x conv(8,3,pad=1,bias=0) bn relu conv(8,3,pad=1,bias=0) bn add(x) "
                 "relu @y conv(16,3,stride=2,pad=1,bias=0) bn relu conv(16,3,pad=1,bias=0) bn @r from(y) "
                 "maxpool(1,stride=2) chpad(4) add(r) relu @z conv(16,1,bias=0) bn @q from(z) conv(8,1) concat(q) "
                 "gap dense(3)")


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        mods = {0: nn.Conv2d(3, 8, 3, padding=1, bias=False), 1: nn.BatchNorm2d(8),
                3: nn.Conv2d(8, 8, 3, padding=1, bias=False), 4: nn.BatchNorm2d(8),
                6: nn.Conv2d(8, 8, 3, padding=1, bias=False), 7: nn.BatchNorm2d(8),
                10: nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), 11: nn.BatchNorm2d(16),
                13: nn.Conv2d(16, 16, 3, padding=1, bias=False), 14: nn.BatchNorm2d(16),
                19: nn.Conv2d(16, 16, 1, bias=False), 20: nn.BatchNorm2d(16),
                21: nn.Conv2d(16, 8, 1), 24: nn.Linear(24, 3)}
        for i in sorted(mods):
            self.add_module(str(i), mods[i])

    def forward(self, t):
        m = lambda i: getattr(self, str(i))
        x = F.relu(m(1)(m(0)(t)))
        h = F.relu(m(4)(m(3)(x)))
        y = F.relu(m(7)(m(6)(h)) + x)
        r = m(14)(m(13)(F.relu(m(11)(m(10)(y)))))
        s = F.pad(y[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4))
        z = F.relu(s + r)
        q = m(20)(m(19)(z))
        c = torch.cat([m(21)(z), q], dim=1)
        return m(24)(c.mean(dim=(2, 3)))


torch.manual_seed(1)
model = Residual()
for mod in model.modules():  # BN weights and biases away from 1 and 0
    if isinstance(mod, nn.BatchNorm2d):
        nn.init.uniform_(mod.weight, 0.5, 1.5)
        nn.init.uniform_(mod.bias, -0.5, 0.5)
B = 4
x = torch.randn(B, 3, 8, 8)
y = torch.tensor([0, 2, 1, 2])
if "residual" in WANT:
    write_fixture("tests/fixtures/reference_residual.txt", model, x, y)
    with open("tests/fixtures/reference_residual_names.txt", "w") as f:
        for k, v in model.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                f.write("%s %s\n" % (k, "x".join(str(d) for d in v.shape)))
    print("wrote tests/fixtures/reference_residual_names.txt")

# ---------------------------------------------------------------- airbench94's pieces
# Must match RECIPE_DESC in tests/test_reference.c (cnnc trains with SGD lr 0.05,
# momentum 0.85, Nesterov, weight decay 0.01 and label smoothing 0.2).
RECIPE_DESC = ("conv(k=2,init=whiten,weight_lr=0) gelu conv(8,3,pad=1,bias=0) maxpool(2) "
               "bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu conv(8,3,pad=1,bias=0) "
               "bn(eps=1e-12,momentum=0.4,weight_lr=0,bias_lr=64) gelu maxpool(2) flatten dense(3,bias=0) "
               "mul(0.11111111)")


class Mul(nn.Module):
    def forward(self, t):
        return t * (1 / 9)


def recipe_opt(model):
    """airbench94's parameter groups: batch-norm shifts at 64x the rate with the decay
    divided by 64 (the same decay per step), the rest at the rate; frozen tensors
    (the whitening weights, batch-norm scales) in no group."""
    lr, wd = 0.05, 0.01
    frozen = {id(model[0].weight), id(model[4].weight), id(model[7].weight)}
    shifts = [model[4].bias, model[7].bias]
    other = [p for p in model.parameters() if id(p) not in frozen and all(p is not s for s in shifts)]
    return torch.optim.SGD([dict(params=shifts, lr=64 * lr, weight_decay=wd / 64),
                            dict(params=other, lr=lr, weight_decay=wd)], momentum=0.85, nesterov=True)


torch.manual_seed(2)
model = nn.Sequential(
    nn.Conv2d(3, 24, 2), nn.GELU(), nn.Conv2d(24, 8, 3, padding=1, bias=False), nn.MaxPool2d(2),
    nn.BatchNorm2d(8, eps=1e-12, momentum=0.4), nn.GELU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
    nn.BatchNorm2d(8, eps=1e-12, momentum=0.4), nn.GELU(), nn.MaxPool2d(2), nn.Flatten(),
    nn.Linear(32, 3, bias=False), Mul())
for i in (4, 7):  # shifts away from 0; the frozen scales stay 1
    nn.init.uniform_(model[i].bias, -0.5, 0.5)
B = 4
x = torch.randn(B, 3, 9, 9)
y = torch.tensor([0, 2, 1, 2])
if "recipe" in WANT:
    write_fixture("tests/fixtures/reference_recipe.txt", model, x, y, recipe_opt, 0.2, "params_after_10_sgd")
