#!/usr/bin/python3
"""Writes tests/fixtures/reference_net.txt: a tiny network's inputs, PyTorch
parameters, logits, loss, gradients, and the parameters and batch-norm running
statistics after 10 Adam steps. test_reference.c compares cnnc against it.

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
opt.zero_grad()
for _ in range(10):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()
put("params_after_10_adam", flat(model.parameters()))
bn = model[1]
put("running_after_11", torch.cat([bn.running_mean, bn.running_var]))
model.eval()
put("eval_logits", model(x))
with open("tests/fixtures/reference_net.txt", "w") as f:
    f.write("\n".join(rows) + "\n")
print("wrote tests/fixtures/reference_net.txt:", len(rows), "tensors")
