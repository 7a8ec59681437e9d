"""Class-conditional networks: conditional batch norms and the projection head against hand computations,
missing labels, the unconditional networks unchanged, shapes, parameter counts, double backward."""
import pytest
import torch
from torch import nn

from gannorm.errors import ConfigError, GannormError, InputError
from gannorm.networks import NETWORKS, NetworkSpec, build_discriminator, build_generator
from gannorm.networks.conditional import (ConditionalBatchNorm1d, ConditionalBatchNorm2d, ProjectionHead,
                                          SelfAttention, SharedConditionalBatchNorm)
from gannorm.networks.registry import conditional_archs
from gannorm.registry import Entry

EPS = 1e-5


def _hand_bn(x, dims):
    """Batch statistics (biased variance) over ``dims``, x normalized: the training-mode batch norm by hand."""
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS)


def _random_tables(cbn, gen):
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.randn(cbn.gain.weight.shape, generator=gen, dtype=torch.float64))
        cbn.bias.weight.copy_(torch.randn(cbn.bias.weight.shape, generator=gen, dtype=torch.float64))


# --- conditional batch norms ----------------------------------------------------------------------------------

def test_conditional_bn2d_against_the_hand_formula_and_per_class_batchnorms():
    gen = torch.Generator().manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, num_classes=4).double()
    _random_tables(cbn, gen)
    x = torch.randn(6, 3, 5, 5, generator=gen, dtype=torch.float64) * 2 + 1
    y = torch.tensor([0, 3, 3, 1, 0, 2])
    out = cbn(x, y)
    xhat = _hand_bn(x, (0, 2, 3))
    g, b = cbn.gain.weight.detach(), cbn.bias.weight.detach()
    hand = torch.stack([g[c].view(3, 1, 1) * xhat[i] + b[c].view(3, 1, 1) for i, c in enumerate(y.tolist())])
    assert torch.allclose(out, hand, atol=1e-10)
    # the same as an nn.BatchNorm2d holding class c's gain and bias, applied to the whole batch, read at y == c
    for c in range(4):
        ref = nn.BatchNorm2d(3, eps=EPS).double()
        with torch.no_grad():
            ref.weight.copy_(g[c])
            ref.bias.copy_(b[c])
        rows = y == c
        if rows.any():
            assert torch.allclose(out[rows], ref(x)[rows], atol=1e-10)
        # running statistics move exactly as a batch norm's
        assert torch.allclose(cbn.bn.running_mean, ref.running_mean) and torch.allclose(cbn.bn.running_var,
                                                                                         ref.running_var)


def test_conditional_bn_eval_uses_running_statistics():
    gen = torch.Generator().manual_seed(1)
    cbn = ConditionalBatchNorm2d(2, num_classes=3).double()
    _random_tables(cbn, gen)
    for _ in range(3):
        cbn(torch.randn(8, 2, 4, 4, generator=gen, dtype=torch.float64) + 3, torch.randint(0, 3, (8,), generator=gen))
    cbn.eval()
    x, y = torch.randn(5, 2, 4, 4, generator=gen, dtype=torch.float64), torch.tensor([2, 1, 0, 0, 2])
    mean, var = cbn.bn.running_mean.view(1, 2, 1, 1), cbn.bn.running_var.view(1, 2, 1, 1)
    xhat = (x - mean) / torch.sqrt(var + EPS)
    hand = cbn.gain.weight[y].view(5, 2, 1, 1) * xhat + cbn.bias.weight[y].view(5, 2, 1, 1)
    assert torch.allclose(cbn(x, y), hand, atol=1e-10)


def test_conditional_bn1d_and_gain_offset():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 2, 2, 1])
    cbn = ConditionalBatchNorm1d(4, num_classes=3).double()
    assert torch.equal(cbn.gain.weight, torch.ones(3, 4, dtype=torch.float64))
    assert torch.equal(cbn.bias.weight, torch.zeros(3, 4, dtype=torch.float64))
    _random_tables(cbn, gen)
    xhat = _hand_bn(x, (0,))
    assert torch.allclose(cbn(x, y), cbn.gain.weight[y] * xhat + cbn.bias.weight[y], atol=1e-10)
    off = ConditionalBatchNorm2d(4, num_classes=3, gain_offset=True).double()
    assert float(off.gain.weight.detach().abs().max()) == 0.0  # gain 1 + 0
    _random_tables(off, gen)
    x4 = x.view(7, 4, 1, 1).expand(7, 4, 2, 2).contiguous()
    hand = (1 + off.gain.weight[y]).view(7, 4, 1, 1) * _hand_bn(x4, (0, 2, 3)) + off.bias.weight[y].view(7, 4, 1, 1)
    assert torch.allclose(off(x4, y), hand, atol=1e-10)


def test_shared_conditional_bn_against_the_hand_formula():
    gen = torch.Generator().manual_seed(3)
    sbn = SharedConditionalBatchNorm(3, cond_dim=5).double()
    x = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    cond = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    wg, wb = sbn.gain.weight.detach(), sbn.bias.weight.detach()
    assert sbn.gain.bias is None and sbn.bias.bias is None
    gain = 1 + torch.einsum("bk,ck->bc", cond, wg)
    bias = torch.einsum("bk,ck->bc", cond, wb)
    hand = gain.view(4, 3, 1, 1) * _hand_bn(x, (0, 2, 3)) + bias.view(4, 3, 1, 1)
    assert torch.allclose(sbn(x, cond), hand, atol=1e-10)


# --- projection head and attention ------------------------------------------------------------------------------

def test_projection_head_against_a_hand_computation():
    head = ProjectionHead(3, num_classes=2).double()
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        head.linear.bias.fill_(0.25)
        head.embed.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, -1.0]]))
    h = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]], dtype=torch.float64)
    y = torch.tensor([1, 0])
    # sample 0: 1 - 4 + 1.5 + 0.25 = -1.25, plus <[2, 0, -1], [1, 2, 3]> = -1  -> -2.25
    # sample 1: -1 + 0 + 2 + 0.25 = 1.25, plus <[0, 1, 0], [-1, 0, 4]> = 0  -> 1.25
    assert head(h, y).tolist() == [[-2.25], [1.25]]


def test_self_attention_against_a_hand_computation():
    torch.manual_seed(0)
    att = SelfAttention(16).double()
    with torch.no_grad():
        att.gamma.fill_(0.7)
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    w = {k: getattr(att, k).weight.detach()[:, :, 0, 0] for k in ("theta", "phi", "g", "o")}
    out = torch.empty_like(x)
    for b in range(2):
        X = x[b].reshape(16, 16)  # [C, positions]
        theta, phi, g = w["theta"] @ X, w["phi"] @ X, w["g"] @ X
        # 2x2 max pool of phi and g, positions in row-major order of the pooled 2x2 map
        pool = lambda t: t.reshape(-1, 2, 2, 2, 2).amax(dim=(2, 4)).reshape(t.shape[0], 4)  # noqa: E731
        phi, g = pool(phi), pool(g)
        beta = torch.softmax(theta.T @ phi, dim=1)  # [16 positions, 4 pooled]
        o = w["o"] @ (g @ beta.T)  # [C, positions]
        out[b] = x[b] + 0.7 * o.reshape(16, 4, 4)
    assert torch.allclose(att(x), out, atol=1e-10)
    assert (att.theta.out_channels, att.g.out_channels, att.o.out_channels) == (2, 8, 16)
    assert all(isinstance(getattr(att, k), nn.Conv2d) and getattr(att, k).bias is None
               for k in ("theta", "phi", "g", "o"))
    with torch.no_grad():
        att.gamma.zero_()
    assert torch.equal(att(x), x)


# --- missing labels ---------------------------------------------------------------------------------------------

CASES = [("cnn", (3, 16, 16)), ("dscnn", (3, 16, 16)), ("resnet", (3, 16, 16)), ("mlp", (2,)),
         ("biggan", (3, 32, 32))]


def _small(arch, shape, k=3, **options):
    width = {"mlp": 1 / 4, "biggan": 1 / 16}.get(arch, 1 / 8)
    G = build_generator(arch, shape, z_dim=12, width=width, num_classes=k, **options)
    D = build_discriminator(arch, shape, width=width, num_classes=k, **options)
    return G, D


@pytest.mark.parametrize("arch,shape", CASES)
def test_missing_labels_is_a_one_line_error(arch, shape):
    G, D = _small(arch, shape)
    assert G.num_classes == D.num_classes == 3
    z, x = torch.randn(2, 12), torch.randn(2, *shape)
    for call in (lambda: G(z), lambda: D(x)):
        with pytest.raises(InputError) as e:
            call()
        assert "\n" not in str(e.value) and "labels are needed" in str(e.value) and "num_classes=3" in str(e.value)
    with pytest.raises(InputError, match=r"shape \[2\]"):
        D(x, torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="integer tensor"):
        G(z, torch.tensor([0.0, 1.0]))


def test_missing_labels_in_the_modules():
    with pytest.raises(InputError, match="labels are needed"):
        ConditionalBatchNorm2d(2, 3)(torch.randn(2, 2, 3, 3))
    with pytest.raises(InputError, match="labels are needed"):
        ProjectionHead(4, 3)(torch.randn(2, 4))


# --- builders and registry --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [-1, 1.5, True, "3", None])
def test_num_classes_must_be_a_non_negative_int(bad):
    for build in (build_generator, build_discriminator):
        with pytest.raises(ConfigError, match="num_classes must be an integer >= 0"):
            build("cnn", (3, 16, 16), width=1 / 8, num_classes=bad)


def test_unconditional_arch_refuses_num_classes(monkeypatch):
    mlp = NETWORKS.get("mlp")
    plain = NetworkSpec(lambda shape, *, z_dim, width, **o: nn.Linear(z_dim, shape[0]),
                        lambda shape, *, width, **o: nn.Linear(shape[0], 1), "vector", options=mlp.options)
    monkeypatch.setitem(NETWORKS._entries, "plain_mlp", Entry("plain_mlp", plain, "an unconditional arch"))
    assert "plain_mlp" not in conditional_archs() and "biggan" in conditional_archs()
    for build in (build_generator, build_discriminator):
        with pytest.raises(ConfigError) as e:
            build("plain_mlp", (2,), num_classes=4)
        assert str(e.value) == ("network 'plain_mlp' is not class-conditional (num_classes=4); conditional archs: "
                                "cnn, dscnn, resnet, mlp, biggan")
        assert build("plain_mlp", (2,), num_classes=0).num_classes == 0  # builds, and says it is unconditional


# --- num_classes = 0 is the unconditional network, bit for bit ------------------------------------------------

CNN_G_KEYS = ["linear.weight", "linear.bias", "bn0.weight", "bn0.bias", "bn0.running_mean", "bn0.running_var",
              "bn0.num_batches_tracked"]
CNN_D_KEYS = ["features.0.weight", "features.0.bias", "linear.weight", "linear.bias"]


@pytest.mark.parametrize("arch,shape", CASES[:4])
def test_num_classes_zero_is_the_unconditional_network(arch, shape):
    width = 1 / 4 if arch == "mlp" else 1 / 8
    nets = []
    for kwargs in ({}, {"num_classes": 0}):
        torch.manual_seed(7)
        G = build_generator(arch, shape, z_dim=12, width=width, **kwargs)
        D = build_discriminator(arch, shape, width=width, **kwargs)
        nets.append((G, D))
    (G0, D0), (G1, D1) = nets
    for a, b in ((G0, G1), (D0, D1)):
        assert a.num_classes == b.num_classes == 0
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not any(isinstance(m, (nn.Embedding, ProjectionHead, ConditionalBatchNorm2d, ConditionalBatchNorm1d))
                       for m in b.modules())
    z = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    assert torch.equal(G0(z), G1(z)) and torch.equal(D0(G0(z)), D1(G1(z)))
    if arch == "cnn":
        keys = list(G1.state_dict())
        assert keys[:7] == CNN_G_KEYS and [k for k in D1.state_dict() if not k.startswith("features.") or
                                            k.startswith("features.0.")] == CNN_D_KEYS


@pytest.mark.parametrize("arch,shape", CASES[:4])
def test_conditional_d_is_the_unconditional_d_plus_the_projection(arch, shape):
    """Same seed: every layer the two Ds share gets the same draw, and the difference of the outputs is the
    inner product of the class embedding with the features fed to the linear layer (read with a hook)."""
    width = 1 / 4 if arch == "mlp" else 1 / 8
    torch.manual_seed(3)
    D0 = build_discriminator(arch, shape, width=width)
    torch.manual_seed(3)
    D1 = build_discriminator(arch, shape, width=width, num_classes=5)
    s0, s1 = D0.state_dict(), D1.state_dict()
    last0 = [k for k in s0 if k.endswith("weight")][-1]
    assert torch.equal(s0[last0], s1["head.linear.weight"])
    assert all(torch.equal(s0[k], s1[k]) for k in s0 if k in s1)
    assert set(s1) - set(s0) >= {"head.linear.weight", "head.embed.weight"}
    assert float(D1.head.embed.weight.detach().abs().min()) > 0  # the embedding is drawn, not left at 0
    D0, D1 = D0.double(), D1.double()  # the CNN's features are tiny at init: compare in float64
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.tensor([0, 4, 4, 2, 1, 3])
    seen = {}
    hook = D1.head.linear.register_forward_pre_hook(lambda m, args: seen.update(h=args[0]))
    with torch.no_grad():
        diff = D1(x, y) - D0(x)
        hook.remove()
        hand = (D1.head.embed.weight[y] * seen["h"]).sum(dim=1, keepdim=True)
    assert (hand != 0).all()
    assert torch.allclose(diff, hand, rtol=1e-6, atol=1e-9 * float(hand.abs().max()))


@pytest.mark.parametrize("arch,shape", [("cnn", (3, 16, 16)), ("resnet", (3, 16, 16))])
def test_conditional_g_starts_as_the_unconditional_g(arch, shape):
    """Gain 1, bias 0 and the same draws: at initialisation the conditional G is the unconditional one."""
    torch.manual_seed(5)
    G0 = build_generator(arch, shape, z_dim=12, width=1 / 8)
    torch.manual_seed(5)
    G1 = build_generator(arch, shape, z_dim=12, width=1 / 8, num_classes=4)
    z = torch.randn(5, 12)
    y = torch.tensor([0, 1, 2, 3, 3])
    assert torch.allclose(G0(z), G1(z, y), atol=1e-6)
    # change one class's bias in one norm: in eval mode (no batch coupling) only that class's samples move
    norms = [m for m in G1.modules() if isinstance(m, (ConditionalBatchNorm1d, ConditionalBatchNorm2d))]
    G0.eval(), G1.eval()
    with torch.no_grad():
        before = G1(z, y)
        assert torch.allclose(before, G0(z), atol=1e-6)
        norms[1].bias.weight[3] += 1.0
        out = G1(z, y)
    assert torch.allclose(out[:3], before[:3], atol=1e-6) and not torch.allclose(out[3:], before[3:], atol=1e-3)


def test_the_cnn_g_norms_are_conditional():
    G = build_generator("cnn", (3, 32, 32), width=1 / 8, num_classes=10)
    assert isinstance(G.bn0, ConditionalBatchNorm1d) and G.bn0.num_features == 4 * 4 * 64
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in G.modules()) == 3
    assert not any(type(m) in (nn.BatchNorm1d, nn.BatchNorm2d) and m.affine for m in G.modules())
    G = build_generator("cnn", (3, 32, 32), width=1 / 8, num_classes=10, bottom_bn="channel")
    assert isinstance(G.bn0, ConditionalBatchNorm2d) and G.bn0.num_features == 64
    R = build_generator("resnet", (3, 32, 32), width=1 / 8, num_classes=10)
    assert sum(isinstance(m, ConditionalBatchNorm2d) for m in R.modules()) == 6
    assert type(R.bn) is nn.BatchNorm2d  # the output norm stays unconditional


def test_mlp_g_concatenates_the_class_embedding():
    G = build_generator("mlp", (2,), z_dim=6, num_classes=4, depth=2, hidden=8)
    assert G.net[0].in_features == 12 and G.embed.weight.shape == (4, 6)
    z, y = torch.randn(3, 6), torch.tensor([1, 1, 2])
    with torch.no_grad():
        hand = G.net(torch.cat([z, G.embed.weight[y]], dim=1))
        assert torch.equal(G(z, y), hand)
        assert torch.equal(G(z, y)[0], G(z, y)[0]) and not torch.allclose(G(z, y)[1], G(z, torch.tensor([1, 3, 2]))[1])


def test_linear_projection_d_gradient_by_hand():
    """depth 0: D(x, y) = (w + e_y) . x + b, so dD/dx = w + e_y exactly."""
    D = build_discriminator("mlp", (3,), depth=0, num_classes=2)
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([1, 0, 1, 1])
    (g,) = torch.autograd.grad(D(x, y).sum(), x)
    assert torch.allclose(g, D.head.linear.weight.detach() + D.head.embed.weight.detach()[y], atol=1e-6)


# --- shapes, counts, double backward ---------------------------------------------------------------------------

SHAPES = [("cnn", s) for s in ((3, 16, 16), (3, 32, 32), (3, 48, 48), (3, 64, 64), (1, 16, 16))] + \
         [("dscnn", (3, 32, 32))] + \
         [("resnet", (3, r, r)) for r in (16, 32, 48, 64, 128)] + [("mlp", (2,)), ("mlp", (5,))] + \
         [("biggan", (3, r, r)) for r in (32, 64, 128)] + [("biggan", (1, 32, 32))]


@pytest.mark.parametrize("arch,shape", SHAPES, ids=[f"{a}-{'x'.join(map(str, s))}" for a, s in SHAPES])
def test_shapes_at_every_resolution(arch, shape):
    G, D = _small(arch, shape, k=7)
    y = torch.tensor([6, 0, 3])
    x = G(torch.randn(3, 12), y)
    assert x.shape == (3, *shape)
    out = D(x, y)
    assert out.shape == (3, 1) and torch.isfinite(out).all()


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_of_the_conditional_sngan_networks():
    """Conditional = unconditional + (K - 1) * 2C per conditional norm + K * F for the projection embedding."""
    K = 10
    g0, g1 = build_generator("cnn", (3, 32, 32)), build_generator("cnn", (3, 32, 32), num_classes=K)
    assert _count(g1) - _count(g0) == (K - 1) * 2 * (8192 + 256 + 128 + 64)
    d0, d1 = build_discriminator("cnn", (3, 32, 32)), build_discriminator("cnn", (3, 32, 32), num_classes=K)
    assert _count(d1) - _count(d0) == K * 8192
    g0, g1 = build_generator("resnet", (3, 32, 32)), build_generator("resnet", (3, 32, 32), num_classes=K)
    assert _count(g1) - _count(g0) == (K - 1) * 2 * (6 * 256)  # 3 blocks x 2 norms of 256 channels
    d0, d1 = build_discriminator("resnet", (3, 32, 32)), build_discriminator("resnet", (3, 32, 32), num_classes=K)
    assert _count(d1) - _count(d0) == K * 128
    m0, m1 = build_generator("mlp", (2,)), build_generator("mlp", (2,), num_classes=K)
    assert _count(m1) - _count(m0) == K * 128 + 128 * 128  # the embedding + the wider first layer


DOUBLE = [("cnn", (3, 16, 16)), ("resnet", (3, 16, 16)), ("mlp", (2,)), ("biggan", (3, 32, 32))]


@pytest.mark.parametrize("arch,shape", DOUBLE)
def test_double_backward_through_the_conditional_d(arch, shape):
    options = {"attention": 16} if arch == "biggan" else {}  # an attention block in D at 32 px
    _, D = _small(arch, shape, k=4, **options)
    if arch == "biggan":
        assert any(isinstance(m, SelfAttention) for m in D.modules())
        with torch.no_grad():
            for m in D.modules():
                if isinstance(m, SelfAttention):
                    m.gamma.fill_(0.5)  # so that the attention path carries gradient
    x = torch.randn(3, *shape, requires_grad=True)
    y = torch.tensor([3, 0, 1])
    (g,) = torch.autograd.grad(D(x, y).sum(), x, create_graph=True)
    assert g.shape == x.shape and torch.isfinite(g).all()
    (g.pow(2).sum()).backward()
    grads = {n: p.grad for n, p in D.named_parameters()}
    # every weight is reached (the output bias cannot be: it does not change dD/dx)
    assert all(grads[n] is not None and torch.isfinite(grads[n]).all() for n in grads if n.endswith("weight"))
    assert float(grads["head.embed.weight"].abs().sum()) > 0  # the penalty reaches the class embedding
    assert float(grads["head.embed.weight"][2].abs().sum()) == 0  # class 2 is not in the batch


def test_errors_are_gannorm_errors():
    assert issubclass(InputError, GannormError) and issubclass(ConfigError, GannormError)
