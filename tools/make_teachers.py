"""Writes tiny TorchScript teachers that follow the `must-ds label` model
contract: one per task kind (cls.pt, det.pt, seg.pt, depth.pt) and three
broken ones for the tests (wrong_shape.pt, nans.pt, throws.pt). Their
outputs are simple functions of the pixels, not trained models.

Usage: python3 tools/make_teachers.py OUT_DIR"""
import sys

import torch
import torch.nn.functional as F


class Cls(torch.nn.Module):
    def forward(self, x):
        m = x.mean(dim=(2, 3))  # B×3
        return torch.stack([m[:, 0] * 3.0, m[:, 1] - m[:, 2], m.sum(1)], 1)  # B×3 logits


class Det(torch.nn.Module):
    def forward(self, x):
        b, _, h, w = x.shape
        s = torch.sigmoid(x.mean(dim=(1, 2, 3)))  # B
        boxes = torch.tensor([[4.0, 2.0, 30.0, 20.0], [1.0, 1.0, 3.0, 3.0], [10.0, 0.0, float(w), float(h)]]).expand(b, 3, 4).clone()
        scores = torch.stack([s, s * 0.1, 1.0 - s * 0.5], 1)
        classes = torch.tensor([1, 0, 1]).expand(b, 3).clone()
        return boxes, scores, classes


class Seg(torch.nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 4) * 2.0  # B×3×h/4×w/4: 3 classes


class Depth(torch.nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x.mean(1, keepdim=True), 8) + 3.0


class WrongShape(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))[:, :2]  # 2 classes for a 3-class task


class NaNs(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)) * float("nan")


class Throws(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 0:
            raise RuntimeError("this teacher always fails")
        return x


out = sys.argv[1]
for name, m in [("cls", Cls()), ("det", Det()), ("seg", Seg()), ("depth", Depth()),
                ("wrong_shape", WrongShape()), ("nans", NaNs()), ("throws", Throws())]:
    torch.jit.script(m).save(f"{out}/{name}.pt")
