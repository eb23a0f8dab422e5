"""Writes tiny TorchScript teachers that follow the `must-ds label` model
contract: one per task kind (cls.pt, det.pt, seg.pt, depth.pt), three
broken ones for the tests (wrong_shape.pt, nans.pt, throws.pt), and probes
whose outputs the tests can predict by hand: chan0.pt, chan1.pt, chan2.pt
(depth: one channel of the model input, as it is), coords.pt (depth:
64 * row + column of the input frame, so the stored map shows which input
pixels cover the image) and bright_box.pt (detection: the box around the
input pixels brighter than the normalised mean, so the boxes follow the
image content). Their outputs are simple functions of the pixels, not
trained models.

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


class Channel(torch.nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x[:, self.c:self.c + 1]  # B×1×H×W: the input channel itself


class Coords(torch.nn.Module):
    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        ys = torch.arange(h, dtype=torch.float32, device=x.device).view(1, 1, h, 1)
        xs = torch.arange(w, dtype=torch.float32, device=x.device).view(1, 1, 1, w)
        return ys * 64.0 + xs + x[:, :1] * 0.0  # B×1×H×W, exact in float16 below 2048


class BrightBox(torch.nn.Module):
    def forward(self, x):
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        bright = x.mean(1) > 0.0  # B×H×W
        cols = bright.any(1)  # B×W
        rows = bright.any(2)  # B×H
        xs = torch.arange(w, dtype=torch.float32, device=x.device).expand(b, w)
        ys = torch.arange(h, dtype=torch.float32, device=x.device).expand(b, h)
        far = float(w + h)
        x0 = torch.where(cols, xs, torch.full_like(xs, far)).min(1).values
        x1 = torch.where(cols, xs + 1.0, torch.full_like(xs, -far)).max(1).values
        y0 = torch.where(rows, ys, torch.full_like(ys, far)).min(1).values
        y1 = torch.where(rows, ys + 1.0, torch.full_like(ys, -far)).max(1).values
        found = cols.any(1).float()  # B
        boxes = torch.stack([x0, y0, x1, y1], 1) * found.unsqueeze(1)
        classes = torch.zeros(b, 1, dtype=torch.long, device=x.device)
        return boxes.unsqueeze(1), found.unsqueeze(1), classes


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
                ("wrong_shape", WrongShape()), ("nans", NaNs()), ("throws", Throws()),
                ("chan0", Channel(0)), ("chan1", Channel(1)), ("chan2", Channel(2)),
                ("coords", Coords()), ("bright_box", BrightBox())]:
    torch.jit.script(m).save(f"{out}/{name}.pt")
