"""The ConvNet baseline: features of width `hidden` from whole images of any usable size."""

from __future__ import annotations

import pytest
import torch

from fwbench.config import resolve
from fwbench.errors import FwbenchError
from fwbench.models import MODELS
from fwbench.models.base import ImageModel
from fwbench.models.convnet import ConvNet


def _net(seed=0, **over) -> ConvNet:
    cfg = resolve("mnist", "convnet", over).model_cfg
    torch.manual_seed(seed)
    return ConvNet(1, cfg).double()


@pytest.mark.parametrize("features", [50, 100, 200])
def test_final_fc_width_is_the_features_setting(features):
    net = _net(hidden=features)
    assert net.fc.out_features == features == net.output_size
    y = net(torch.rand(3, 1, 28, 28, dtype=torch.double))
    assert y.shape == (3, features) and (y >= 0).all()  # ReLU features


def test_registered_as_an_image_model():
    cls = MODELS.get("convnet")
    assert issubclass(cls, ImageModel) and cls.consumes == "image"
    assert _net().state_size(24) == 0


@pytest.mark.parametrize("side", [16, 28, 48, 64])
def test_any_image_size_from_the_smallest(side):
    net = _net(hidden=10)
    assert net.min_side() == 16  # two blocks of 5 x 5 convolutions and 2 x 2 pooling
    assert net(torch.rand(2, 1, side, side, dtype=torch.double)).shape == (2, 10)


def test_too_small_images_and_bad_settings_are_clear():
    with pytest.raises(FwbenchError, match="too small .*at least 16 pixels"):
        _net()(torch.rand(1, 1, 12, 12, dtype=torch.double))
    with pytest.raises(FwbenchError, match="expected an odd integer"):
        resolve("mnist", "convnet", {"kernel": 4})


def test_deterministic_under_seed_and_depends_on_every_pixel_region():
    x = torch.rand(2, 1, 28, 28, dtype=torch.double)
    torch.testing.assert_close(_net(seed=3)(x), _net(seed=3)(x))
    assert not torch.allclose(_net(seed=3)(x), _net(seed=4)(x))
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(_net(hidden=64)(x).sum(), x)
    for r in (slice(0, 14), slice(14, 28)):  # the whole image is seen, not a glimpse
        for c in (slice(0, 14), slice(14, 28)):
            assert g[:, 0, r, c].abs().sum() > 0


@pytest.mark.parametrize("side", [28, 48])
def test_channels_last_matches_the_nchw_reference_values_and_gradients(side):
    """The channels-last layout `forward` runs against the same network in NCHW, float64."""
    net = _net(hidden=32)
    assert net.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(4, 1, side, side, dtype=torch.double, requires_grad=True)
    y, y_ref = net(x), net.forward_reference(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum(), [x, *net.parameters()])
    grads_ref = torch.autograd.grad((y_ref * w).sum(), [x, *net.parameters()])
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    assert net.implementation() == {"layout": "channels_last"}
