"""The ResNet D's ``linear_bias`` option: the GN-GAN ResNet-32 D's bias on the final linear."""
import pytest
import torch

from gannorm.networks import build_discriminator


def test_default_keeps_each_layouts_own_bias_and_state_dict():
    torch.manual_seed(0)
    d_default = build_discriminator("resnet", (3, 32, 32), width=1 / 8)
    torch.manual_seed(0)
    d_false = build_discriminator("resnet", (3, 32, 32), width=1 / 8, linear_bias=False)
    assert d_default.linear.bias is None and "linear.bias" not in d_default.state_dict()
    a, b = d_default.state_dict(), d_false.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to today's network
    # the 48/64/128-px layouts keep their bias by default; false removes it
    assert build_discriminator("resnet", (3, 48, 48), width=1 / 16).linear.bias is not None
    assert build_discriminator("resnet", (3, 48, 48), width=1 / 16, linear_bias=False).linear.bias is None


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_bias_adds_exactly_the_bias(pool):
    torch.manual_seed(0)
    d0 = build_discriminator("resnet", (3, 32, 32), width=1 / 8, pool=pool)
    torch.manual_seed(0)
    d1 = build_discriminator("resnet", (3, 32, 32), width=1 / 8, pool=pool, linear_bias=True)
    assert d1.linear.bias is not None and d1.linear.bias.shape == (1,)
    assert set(d1.state_dict()) - set(d0.state_dict()) == {"linear.bias"}
    assert torch.count_nonzero(d1.linear.bias) == 0  # initialised to 0 like every other bias
    # the same weights in both (the bias is the only extra entry), then move the bias off 0
    missing, unexpected = d1.load_state_dict(d0.state_dict(), strict=False)
    assert missing == ["linear.bias"] and unexpected == []
    with torch.no_grad():
        d1.linear.bias.fill_(0.375)
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        y0, y1 = d0(x), d1(x)
    # independent computation of the pooled features and the final linear with the bias
    with torch.no_grad():
        h = torch.relu(d0.blocks(x))
        h = h.sum(dim=(2, 3)) if pool == "sum" else h.mean(dim=(2, 3))
        expected = h @ d0.linear.weight.t() + 0.375
    assert torch.allclose(y1, expected, atol=1e-5)
    assert torch.allclose(y1 - y0, torch.full_like(y0, 0.375), atol=1e-5)


def test_bias_is_a_trainable_parameter_that_gets_a_gradient():
    D = build_discriminator("resnet", (3, 32, 32), width=1 / 8, linear_bias=True, normalization="sn")
    D(torch.randn(3, 3, 32, 32)).sum().backward()
    grads = {n: p.grad for n, p in D.named_parameters() if n.startswith("linear.bias") or n.endswith("linear.bias")}
    assert grads and all(g is not None and torch.allclose(g, torch.tensor([3.0])) for g in grads.values())
