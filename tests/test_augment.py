"""CR augmentation: flips and translations with a -1 border, seeded."""
import torch

from gannorm.augment import consistency_loss, flip_translate


def test_flip_translate_moves_pixels_and_fills_with_black():
    x = torch.full((64, 1, 8, 8), 0.5)
    x[:, 0, 3, 2] = 1.0  # a marked pixel, left of centre
    y = flip_translate(x, translate=0.25, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for i in range(64):
        pos = (y[i, 0] == 1.0).nonzero()
        if len(pos):  # the marked pixel moved by at most 2 px (plus a possible flip of its column)
            r, c = pos[0].tolist()
            assert abs(r - 3) <= 2 and min(abs(c - 2), abs(c - 5)) <= 2
        assert set(y[i].unique().tolist()) <= {-1.0, 0.5, 1.0}
    assert (y == -1).any()  # some border was uncovered
    flips = torch.Generator().manual_seed(0)
    assert torch.equal(flip_translate(x, 0.25, flips), y)  # seeded


def test_zero_translate_is_flip_only():
    x = torch.randn(32, 3, 6, 6)
    y = flip_translate(x, 0.0, torch.Generator().manual_seed(2))
    for i in range(32):
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))


def test_consistency_loss():
    a, b = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])
    assert float(consistency_loss(a, b)) == (1 + 4) / 2
