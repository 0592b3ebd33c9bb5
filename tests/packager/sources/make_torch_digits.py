"""Runs in the PyTorch environment (`make setup-torch`): train a small CNN on the digits
and write it the ways users hand it to the packager.

    python make_torch_digits.py DIGITS.npz OUT_DIR

DIGITS.npz is tests/models.py's (x_train, y_train NHWC in [0, 1]). OUT_DIR gets
``digits.pt2`` (torch.export.save, example input 1x1x8x8), ``digits.onnx``
(torch.onnx.export as its defaults give it: a fixed batch of 1, NCHW), ``digits.pth`` (the
weights) and ``factory.py`` (``make()`` -> (module, example input), loading them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

FACTORY = '''"""The digits CNN for `packager build factory.py:make`."""

from pathlib import Path

import torch


class Digits(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        return torch.softmax(self.fc(torch.flatten(x, 1)), dim=-1)


def make() -> tuple[torch.nn.Module, torch.Tensor]:
    net = Digits()
    net.load_state_dict(torch.load(Path(__file__).with_name("digits.pth")))
    return net.eval(), torch.zeros(1, 1, 8, 8)
'''


def main(data: str, out_dir: str) -> None:
    out = Path(out_dir)
    (out / "factory.py").write_text(FACTORY)
    scope: dict[str, object] = {"__file__": str(out / "factory.py")}
    exec(compile(FACTORY, "factory.py", "exec"), scope)  # the same class the factory defines
    torch.manual_seed(0)
    net = scope["Digits"]()  # type: ignore[operator]
    with np.load(data) as npz:
        x = torch.from_numpy(np.moveaxis(npz["x_train"], -1, 1).astype(np.float32))
        y = torch.from_numpy(npz["y_train"].astype(np.int64))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):  # full batch: 1,347 digits
        optimizer.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(net(x) + 1e-9), y)
        loss.backward()
        optimizer.step()
    net.eval()
    torch.save(net.state_dict(), out / "digits.pth")
    example = torch.zeros(1, 1, 8, 8)
    torch.export.save(torch.export.export(net, (example,)), str(out / "digits.pt2"))
    torch.onnx.export(net, (example,), str(out / "digits.onnx"), dynamo=False,
                      input_names=["image"], output_names=["probabilities"])  # fmt: skip
    with torch.no_grad():
        accuracy = float((net(x).argmax(1) == y).float().mean())
    print(f"trained: loss {float(loss):.4f}, train accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
