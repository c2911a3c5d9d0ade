"""ConvNet baseline for image tasks (docs/paper.md §2.4; Ba et al. 2016, Tables 2 and 3).

It sees the whole image, not glimpses. The paper gives no architecture beyond "convolution and
pooling layers, then a fully connected layer of 50 / 100 / 200 features"; ours [C]:

    for each width c in `channels`:  conv k x k (c filters, no padding) -> ReLU -> max-pool 2
    adaptive average pool to 4 x 4 -> flatten -> linear to `hidden` features -> ReLU

With the defaults this is LeNet's feature extractor (20 and 50 filters of 5 x 5): 28 -> 24 ->
12 -> 8 -> 4 for MNIST. The adaptive pool fixes the flattened size whatever the image side
(9 x 9 -> 4 x 4 for 48 x 48 faces), so one network serves every image size.

The feature maps are kept channels-last (NHWC) in memory, where torch's CPU convolutions and
pooling take less time per training step than in the default NCHW (batch 128, one thread);
`forward_reference` is the same network in NCHW, its parity reference. The layout changes no
value beyond rounding.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from fwbench.errors import FwbenchError
from fwbench.models.base import CoreConfig, ImageModel
from fwbench.settings import setting

POOLED = 4  # side of the feature maps entering the fully connected layer


@dataclasses.dataclass(frozen=True)
class ConvNetConfig(CoreConfig):
    channels: tuple[int, ...] = setting((20, 50), "filters of each conv + pool block", low=1,
                                        paper="[C]")
    kernel: int = setting(5, "convolution kernel side (odd)", low=1, high=15, paper="[C]")

    def validate(self) -> None:
        if not self.channels:
            raise FwbenchError("invalid value () for channels: expected at least one block")
        if self.kernel % 2 == 0:
            raise FwbenchError(f"invalid value {self.kernel} for kernel: expected an odd integer")


class ConvNet(ImageModel):
    Config = ConvNetConfig
    summary = "ConvNet on the whole image; `hidden` = width of its final fully connected layer"

    def __init__(self, input_size: int, cfg: ConvNetConfig):
        super().__init__(input_size, cfg)
        layers, c_in = [], input_size  # input_size: image channels
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, cfg.kernel), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c
        self.conv = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(POOLED))
        self.fc = nn.Linear(c_in * POOLED * POOLED, cfg.hidden)
        self.to(memory_format=torch.channels_last)  # the filters too: [out, k, k, in] in memory

    def min_side(self) -> int:
        """The smallest image side every convolution still fits in."""
        side = 1
        for _ in self.cfg.channels:  # backwards through pool (x2) and conv (+k-1)
            side = 2 * side + self.cfg.kernel - 1
        return side

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if min(img.shape[-2:]) < self.min_side():
            raise FwbenchError(f"images of {img.shape[-2]}x{img.shape[-1]} are too small for "
                               f"the ConvNet's {len(self.cfg.channels)} blocks of "
                               f"{self.cfg.kernel}x{self.cfg.kernel} convolutions "
                               f"(at least {self.min_side()} pixels a side)")
        z = self.conv(img.contiguous(memory_format=torch.channels_last))  # [B, C, 4, 4]
        return torch.relu(self.fc(z.flatten(1)))  # [B, C*16] -> [B, hidden]

    def forward_reference(self, img: torch.Tensor) -> torch.Tensor:
        """`forward` in torch's default NCHW layout throughout (its parity reference)."""
        z = img.contiguous()
        for layer in self.conv:
            if isinstance(layer, nn.Conv2d):
                z = F.conv2d(z, layer.weight.contiguous(), layer.bias).contiguous()
            else:
                z = layer(z).contiguous()
        return torch.relu(self.fc(z.flatten(1)))

    def implementation(self, seq_len: int | None = None) -> dict[str, str]:
        return {"layout": "channels_last"}
