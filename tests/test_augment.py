"""CR augmentation (flips and translations with a -1 border) and DiffAugment, seeded, shardable, differentiable."""
import pytest
import torch

from gannorm.augment import DIFFAUG_OPS, DiffAugment, consistency_loss, flip_translate
from gannorm.errors import GannormError, InputError


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


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


FULL = "color,translation,cutout"


def test_the_registry_holds_the_three_ops_and_unknown_ops_are_refused_with_the_known_ones():
    assert DIFFAUG_OPS.names() == ["color", "translation", "cutout"]
    with pytest.raises(GannormError, match="unknown DiffAugment op 'flip'; known: color, translation, cutout"):
        DiffAugment("color,flip")
    with pytest.raises(GannormError, match="known: color"):
        DiffAugment(["cutout", "zoom"])
    assert DiffAugment(" color , cutout ").policy == ("color", "cutout")
    assert DiffAugment(("translation",)).policy == ("translation",)


def test_shard_contract_rows_of_the_global_batch():
    aug = DiffAugment(FULL)
    x = torch.randn(10, 3, 16, 16, generator=gen(1))
    params = aug.draw(10, (3, 16, 16), gen(2))
    full = aug.apply(x, params)
    for rows in (torch.tensor([7, 2, 5]), torch.arange(1, 10, 2), torch.arange(10) < 4):
        local = aug.apply(x[rows], params.select(rows))
        torch.testing.assert_close(local, full[rows], rtol=0, atol=1e-6)
    assert len(params.select(torch.tensor([0, 0, 9]))) == 3


def test_same_generator_state_same_output_and_the_call_is_draw_then_apply():
    aug = DiffAugment(FULL)
    x = torch.randn(6, 3, 8, 8, generator=gen(1))
    a, b = aug(x, gen(5)), aug(x, gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, gen(6)))
    assert torch.equal(a, aug.apply(x, aug.draw(6, (3, 8, 8), gen(5))))


def test_an_empty_policy_is_the_identity_and_draws_nothing():
    x = torch.randn(4, 3, 8, 8)
    for policy in ("", [], ","):
        g = gen(3)
        state = g.get_state()
        out = DiffAugment(policy)(x, g)
        assert torch.equal(out, x) and torch.equal(g.get_state(), state)


def test_the_gradient_reaches_the_input():
    x = torch.randn(5, 3, 16, 16, generator=gen(0), requires_grad=True)
    loss = DiffAugment(FULL)(x, gen(1)).square().sum()
    loss.backward()
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", FULL])
def test_each_op_passes_a_finite_difference_gradient_check(policy):
    aug = DiffAugment(policy)
    x = torch.rand(3, 2, 8, 8, dtype=torch.float64, generator=gen(0)).mul(2).sub(1).requires_grad_(True)
    params = aug.draw(3, (2, 8, 8), gen(4))
    assert torch.autograd.gradcheck(lambda t: aug.apply(t, params), (x,))


def test_the_draws_follow_the_documented_distributions():
    p = DiffAugment(FULL).draw(4000, (3, 16, 12), gen(0))
    color, shift, cut = p.values
    assert -0.5 <= float(color["brightness"].min()) and float(color["brightness"].max()) < 0.5
    assert 0.0 <= float(color["saturation"].min()) and float(color["saturation"].max()) < 2.0
    assert 0.5 <= float(color["contrast"].min()) and float(color["contrast"].max()) < 1.5
    assert abs(float(color["saturation"].mean()) - 1.0) < 0.05
    assert set(shift["dy"].tolist()) == {-2, -1, 0, 1, 2}  # 16 // 8
    assert set(shift["dx"].tolist()) == {-1, 0, 1}  # 12 // 8
    assert set(cut["cy"].tolist()) == set(range(17))  # an even side (8): centres 0..H, as the reference
    assert set(cut["cx"].tolist()) == set(range(13))


def test_color_against_hand_formulas():
    aug = DiffAugment("color")
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64, generator=gen(0)) * 2 - 1
    params = aug.draw(4, (3, 5, 5), gen(1))
    out = aug.apply(x, params)
    v = params.values[0]
    for i in range(4):
        b, s, c = (float(v[k][i]) for k in ("brightness", "saturation", "contrast"))
        img = x[i] + b
        gray = sum(img[ch] for ch in range(3)) / 3  # the mean over the channels at each pixel
        img = torch.stack([(img[ch] - gray) * s + gray for ch in range(3)])
        mean = float(img.sum()) / img.numel()
        torch.testing.assert_close(out[i], (img - mean) * c + mean)


def test_translation_against_hand_shifted_images():
    aug = DiffAugment("translation")
    x = torch.rand(24, 2, 16, 16, generator=gen(0)) + 1  # no zeros in the image itself
    params = aug.draw(24, (2, 16, 16), gen(1))
    out = aug.apply(x, params)
    dy, dx = params.values[0]["dy"], params.values[0]["dx"]
    assert (dy != 0).any() and (dx < 0).any() and (dx > 0).any()
    for n in range(24):
        expected = torch.zeros(2, 16, 16)
        for i in range(16):
            for j in range(16):
                si, sj = i - int(dy[n]), j - int(dx[n])
                if 0 <= si < 16 and 0 <= sj < 16:
                    expected[:, i, j] = x[n, :, si, sj]
        assert torch.equal(out[n], expected), n


@pytest.mark.parametrize("size", [16, 10])
def test_cutout_zeroes_exactly_the_expected_square(size):
    aug = DiffAugment("cutout")
    x = torch.rand(30, 3, size, size, generator=gen(0)) + 1
    params = aug.draw(30, (3, size, size), gen(2))
    out = aug.apply(x, params)
    cy, cx = params.values[0]["cy"], params.values[0]["cx"]
    side = size // 2
    full_squares = 0
    for n in range(30):
        top, left = int(cy[n]) - side // 2, int(cx[n]) - side // 2
        hole = torch.zeros(size, size, dtype=torch.bool)
        hole[max(top, 0):max(top + side, 0), max(left, 0):max(left + side, 0)] = True
        assert torch.equal(out[n] == 0, hole.expand(3, -1, -1)), n
        assert torch.equal(out[n][:, ~hole], x[n][:, ~hole])
        full_squares += int(hole.sum()) == side * side
    assert 0 < full_squares < 30  # both whole squares and squares cut by the border were drawn


def test_bad_parameters_are_one_line_input_errors():
    aug = DiffAugment(FULL)
    params = aug.draw(4, (3, 8, 8), gen(0))
    with pytest.raises(InputError, match="cannot augment a batch of shape"):
        aug.apply(torch.zeros(5, 3, 8, 8), params)
    with pytest.raises(InputError, match="values in \\[0, 4\\)"):
        params.select(torch.tensor([1, 4]))
    with pytest.raises(InputError, match="drawn for the policy"):
        DiffAugment("color").apply(torch.zeros(4, 3, 8, 8), params)
    with pytest.raises(InputError, match="shape \\(C, H, W\\)"):
        aug.draw(4, (8, 8), gen(0))
    for n in (-1, 2.5, True):
        with pytest.raises(InputError, match=f"^DiffAugment.draw: n must be an integer >= 0, got {n}$"):
            aug.draw(n, (3, 8, 8), gen(0))
