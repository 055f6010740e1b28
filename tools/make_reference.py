#!/usr/bin/python3
"""Writes tests/fixtures/reference_net.txt: a tiny network's inputs, PyTorch
parameters, logits, loss, gradients, and the parameters and batch-norm running
statistics after 10 Adam steps; and tests/fixtures/reference_residual.txt, the
same for a small residual graph (identity, option-A and projection shortcuts,
a concat), with its state_dict names and shapes in reference_residual_names.txt.
test_reference.c compares cnnc against them.

The first conv has no bias: before batch norm its gradient is rounding noise
(~1e-9) that Adam would amplify into +-lr steps of arbitrary sign.

Run from the project root with Debian's python3-torch:
    /usr/bin/python3 tools/make_reference.py
Each line is `name count v1 v2 ...` (float32 values printed with %.9g).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

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


def write_fixture(path, model, x, y):
    """The model's parameters, logits, loss and gradients on (x, y), then
    after 10 Adam steps its parameters, the running statistics of every
    batch norm (mean then variance, in module order) and eval-mode logits."""
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
    loss = F.cross_entropy(logits, y)
    loss.backward()
    put("logits", logits)
    put("loss", loss.reshape(1))
    put("grads", flat(p.grad for p in model.parameters()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    put("params_after_10_adam", flat(model.parameters()))
    bns = [mod for mod in model.modules() if isinstance(mod, nn.BatchNorm2d)]
    put("running_after_11", torch.cat([torch.cat([b.running_mean, b.running_var]) for b in bns]))
    model.eval()
    put("eval_logits", model(x))
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    print("wrote", path + ":", len(rows), "tensors")


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
write_fixture("tests/fixtures/reference_residual.txt", model, x, y)
with open("tests/fixtures/reference_residual_names.txt", "w") as f:
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            f.write("%s %s\n" % (k, "x".join(str(d) for d in v.shape)))
print("wrote tests/fixtures/reference_residual_names.txt")
