"""Glimpse sequences: a hand-computed example, parity with the slow reference, encodings."""

from __future__ import annotations

import pytest
import torch

from fwbench.errors import FwbenchError
from fwbench.tasks.glimpses import (SCHEMES, GlimpseEncoder, codes, glimpse_size, glimpses_reference,
                              scheme, span)


def _ramp(side: int = 28) -> torch.Tensor:
    """img[i, j] = side * i + j, as [1, 1, side, side] float64."""
    return torch.arange(side * side, dtype=torch.float64).reshape(1, 1, side, side)


def test_quadrants_by_hand():
    img = _ramp()
    seq = GlimpseEncoder("quadrants", 28).double()(img)[0]  # [24, 49 + 2 + 16]
    assert seq.shape == (24, 67)
    pix = seq[:, :49].reshape(24, 7, 7)
    a = torch.arange(7, dtype=torch.float64)[:, None]
    b = torch.arange(7, dtype=torch.float64)[None, :]
    # coarse top-left quadrant: mean of pixels (2a, 2b), (2a, 2b+1), (2a+1, 2b), (2a+1, 2b+1)
    # = 28 * 2a + 2b + (0 + 1 + 28 + 29) / 4
    torch.testing.assert_close(pix[0], 56 * a + 2 * b + 14.5)
    torch.testing.assert_close(pix[5], pix[0])  # the coarse view again closes the quadrant
    torch.testing.assert_close(pix[6], 56 * a + 2 * b + 14.5 + 14)  # top-right quadrant
    torch.testing.assert_close(pix[18], 56 * (a + 7) + 2 * b + 14.5 + 14)  # bottom-right
    # fine glimpses: the exact sub-patches, row-major within the quadrant
    torch.testing.assert_close(pix[1], img[0, 0, 0:7, 0:7])
    torch.testing.assert_close(pix[2], img[0, 0, 0:7, 7:14])
    torch.testing.assert_close(pix[4], img[0, 0, 7:14, 7:14])
    torch.testing.assert_close(pix[22], img[0, 0, 21:28, 21:28])
    # level one-hot, then the 4 x 4 cells covered
    level, cells = seq[:, 49:51], seq[:, 51:].reshape(24, 4, 4)
    assert level[0].tolist() == [0, 1] and level[1].tolist() == [1, 0]
    assert cells[0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert cells[2].nonzero().tolist() == [[0, 1]]
    assert cells[19].nonzero().tolist() == [[2, 2]]


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("side", [28, 48, 16])
def test_parity_with_reference_values_and_gradients(name, side):
    torch.manual_seed(0)
    img = torch.rand(3, 1, side, side, dtype=torch.float64, requires_grad=True)
    enc = GlimpseEncoder(name, side).double()
    g = glimpse_size(side)
    fast = enc(img)[..., :g * g]
    slow = glimpses_reference(img, name)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(slow)
    (gf,) = torch.autograd.grad((fast * w).sum(), img)
    (gs,) = torch.autograd.grad((slow * w).sum(), img)
    torch.testing.assert_close(gf, gs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,length", [("quadrants", 24), ("pyramid", 21), ("fine", 16)])
def test_scheme_lengths_and_regions_inside_the_image(name, length):
    for side in (28, 48):
        seq = scheme(name, side)
        assert len(seq) == length
        for s in seq:
            assert 0 <= s.row and s.row + span(s, side) <= side
            assert 0 <= s.col and s.col + span(s, side) <= side


def test_glimpses_scale_with_the_image():
    assert GlimpseEncoder("quadrants", 48).input_size == 12 * 12 + 2 + 16
    assert GlimpseEncoder("quadrants", 28).input_size == 7 * 7 + 2 + 16
    assert codes(scheme("pyramid", 48), 48)[0, 3:].sum() == 16  # the whole image: every cell


def test_every_cell_is_seen_at_full_resolution():
    for name in ("quadrants", "pyramid", "fine"):
        fine = codes(scheme(name, 28), 28)
        levels = fine.shape[1] - 16
        assert fine[fine[:, 0] == 1, levels:].sum(0).min() >= 1


def test_encoder_is_parameter_free_and_leaves_state_dict_empty():
    enc = GlimpseEncoder("quadrants", 28)
    assert list(enc.parameters()) == [] and enc.state_dict() == {}


def test_bad_scheme_side_and_shape():
    with pytest.raises(FwbenchError, match="unknown glimpse scheme 'spiral'"):
        scheme("spiral", 28)
    with pytest.raises(FwbenchError, match="divisible by 4"):
        scheme("quadrants", 30)
    with pytest.raises(FwbenchError, match=r"expects images \[B, 1, 28, 28\]"):
        GlimpseEncoder("quadrants", 28)(torch.zeros(2, 1, 48, 48))
