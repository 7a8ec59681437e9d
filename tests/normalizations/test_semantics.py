"""The behaviours users rely on, for every registered normalization method."""
import copy
import io

import pytest
import torch
from torch import nn

import gannorm
from gannorm.normalizations.mean_sn import MeanOnlyBatchNorm

#: a value for each option some method requires (looked up by option, never by method)
REQUIRED = {"scale": 1.3}
INPUT_SHAPE = (3, 8, 8)


def options_for(name):
    spec = gannorm.METHODS.get(name)
    opts = {o: REQUIRED[o] for o in spec.required_options()}
    if spec.needs_input_shapes:
        opts["input_shape"] = INPUT_SHAPE
    return opts


METHODS = [(name, options_for(name)) for name in gannorm.METHODS.names()]
STEP_METHODS = [(n, o) for n, o in METHODS if "update" in gannorm.METHODS.get(n).options()]


def small_d():
    # a strided conv, a depthwise conv (DSSN's exact DFT sigma) and a linear; MSN follows the last conv
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.LeakyReLU(0.1),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 1))


def vectors(model):
    return {k: v.clone() for k, v in model.state_dict().items() if k.split(".")[-1].startswith(("_u", "_v"))}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(params=METHODS, ids=[m for m, _ in METHODS])
def method(request):
    return request.param


def test_the_table_covers_every_method_and_the_small_d_exercises_them():
    assert [m for m, _ in METHODS] == gannorm.METHODS.names()
    d = gannorm.normalize(small_d(), "dssn", input_shape=INPUT_SHAPE)
    assert isinstance(d[4].parametrizations.weight[0], gannorm.normalizations.depthwise.DepthwiseSeparableSpectralNorm)
    assert isinstance(gannorm.normalize(small_d(), "msn")[4].msn, MeanOnlyBatchNorm)


def test_iteration_runs_only_in_training_mode(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    x = torch.randn(4, 3, 8, 8)
    before = vectors(d)
    d.eval()
    y1, y2 = d(x), d(x)
    assert same(before, vectors(d))  # eval: stored vectors, no update
    assert torch.equal(y1, y2)  # and deterministic
    d.train()
    d(x)
    if before:
        assert not same(before, vectors(d))  # train: one persisted iteration per forward


def test_no_graph_through_the_vectors(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    for _, p, _w in gannorm.normalized_layers(d):
        for buf in p.buffers():
            assert not buf.requires_grad
    out = d(torch.randn(2, 3, 8, 8)).sum()
    out.backward()
    for _, p, _ in gannorm.normalized_layers(d):
        for buf in p.buffers():
            assert buf.grad_fn is None and not buf.requires_grad


def test_gradient_is_that_of_w_over_constant_sigma():
    # with u, v constant: d sigma / dW = u v^T, so grad of <G, W/sigma> is G/sigma - <G, W> u v^T / sigma^2
    layer = gannorm.spectral_norm(nn.Linear(6, 4), warmup=0)
    p = layer.parametrizations.weight[0]
    w = layer.parametrizations.weight.original
    g = torch.randn(4, 6)
    eff = layer.weight  # one training iteration happens here
    u, v = p._u.clone(), p._v.clone()
    (eff * g).sum().backward()
    sigma = u @ w.detach() @ v
    expected = g / sigma - (g * w.detach()).sum() * torch.outer(u, v) / sigma ** 2
    torch.testing.assert_close(w.grad, expected, rtol=1e-5, atol=1e-6)


def test_grad_through_vectors_reproduces_the_tf_gradient():
    layer = gannorm.spectral_norm(nn.Linear(6, 4), warmup=0, grad_through_vectors=True)
    p = layer.parametrizations.weight[0]
    u0, v0 = p._u.clone(), p._v.clone()
    w = layer.parametrizations.weight.original
    g = torch.randn(4, 6)
    (layer.weight * g).sum().backward()

    # independent re-derivation with autograd through an explicit iteration
    w2 = w.detach().clone().requires_grad_(True)
    u = torch.nn.functional.normalize(w2 @ v0, dim=0, eps=1e-12)
    v = torch.nn.functional.normalize(w2.t() @ u, dim=0, eps=1e-12)
    ((w2 / (u @ w2 @ v)) * g).sum().backward()
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-5, atol=1e-6)
    # and it is not the detached gradient
    detached = gannorm.spectral_norm(nn.Linear(6, 4), warmup=0)
    detached.load_state_dict({k: v for k, v in layer.state_dict().items()})
    dp = detached.parametrizations.weight[0]
    dp._u.copy_(u0)
    dp._v.copy_(v0)
    (detached.weight * g).sum().backward()
    assert not torch.allclose(detached.parametrizations.weight.original.grad, w.grad, atol=1e-7)
    assert torch.equal(p._u, dp._u)  # the persisted vectors are the same either way


@pytest.mark.parametrize("method", STEP_METHODS, ids=[m for m, _ in STEP_METHODS])
def test_step_policy_advances_once_per_optimizer_step(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, update="step", **opts)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    handle = gannorm.update_after_step(opt, d)
    real, fake = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    before = vectors(d)
    w_real = [m.weight.detach().clone() for _, m in _layers(d)]
    loss = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake)).mean()
    # the forwards refine on the fly but persist nothing, so D(real) and D(fake) see the same sigma
    assert same(before, vectors(d))
    assert all(torch.equal(a, m.weight) for a, (_, m) in zip(w_real, _layers(d)))
    loss.backward()
    opt.step()
    after = vectors(d)
    assert not same(before, after)
    # what was persisted is exactly one iteration on the post-step weights from the old vectors
    for (_, p, w) in gannorm.normalized_layers(d):
        ref = copy.deepcopy(p)
        for (un, vn) in p.vector_names:
            getattr(ref, un).copy_(before[_key(d, p, un)])
            getattr(ref, vn).copy_(before[_key(d, p, vn)])
        ref.update_vectors(w)
        for (un, _vn) in p.vector_names:
            torch.testing.assert_close(getattr(ref, un), getattr(p, un))
    d(real)
    assert same(after, vectors(d))
    handle.remove()
    opt.step()
    assert same(after, vectors(d))


def _layers(d):
    return [(n, m) for n, m in d.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _key(model, param, buf):
    for k, v in model.state_dict(keep_vars=True).items():
        if v is getattr(param, buf):
            return k
    raise KeyError(buf)


def test_gan_pattern_two_forwards_one_backward(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    g = nn.Sequential(nn.Linear(4, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8)))
    real = torch.randn(4, 3, 8, 8)
    fake = g(torch.randn(4, 4))
    loss = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake.detach())).mean()
    loss.backward()  # would raise "modified by an inplace operation" if vectors were reused in place
    assert all(p.grad is not None for p in d.parameters())
    g_loss = -d(fake).mean()
    g_loss.backward()
    assert all(p.grad is not None for p in g.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_power_iteration_stays_float32_under_autocast(method, dtype):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    x = torch.randn(4, 3, 8, 8)
    ref = copy.deepcopy(d)
    with torch.autocast("cpu", dtype=dtype):
        y = d(x)
    ref(x)  # the same iteration in plain float32
    for k, v in vectors(d).items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, vectors(ref)[k])
    for (_, p, w), _ in zip(gannorm.normalized_layers(d), gannorm.normalized_layers(ref)):
        assert p(w).dtype == torch.float32
    assert torch.isfinite(y).all()
    y.float().sum().backward()


def test_half_precision_weights_use_float32_iteration():
    layer = gannorm.spectral_norm(nn.Linear(300, 200), warmup=50)
    half = copy.deepcopy(layer).to(torch.bfloat16)
    sigma32 = gannorm.sigmas(layer)["Linear/sigma"]
    w = half.weight  # runs the bf16 -> float32 iteration
    assert w.dtype == torch.bfloat16
    assert gannorm.sigmas(half)["Linear/sigma"] == pytest.approx(sigma32, rel=1e-2)


def test_state_dict_round_trip(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(3):
        d(x)
    buf = io.BytesIO()
    torch.save(d.state_dict(), buf)
    buf.seek(0)
    e = gannorm.normalize(small_d(), name, **opts)
    e.load_state_dict(torch.load(buf, weights_only=True))
    d.eval(), e.eval()
    assert torch.equal(d(x), e(x))
    assert gannorm.sigmas(d) == gannorm.sigmas(e)


def test_deepcopy_after_forward(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    x = torch.randn(4, 3, 8, 8)
    d(x).sum().backward()
    e = copy.deepcopy(d)
    assert torch.equal(d.eval()(x), e.eval()(x))
    before = {k: v.clone() for k, v in d.state_dict().items()}
    e.train()(x)
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())  # independent buffers
    if vectors(d):
        assert not same(vectors(d), vectors(e))
    gammas = [{id(p.gamma) for p in m.modules() if isinstance(p, gannorm.GammaScale)} for m in (d, e)]
    assert len(gammas[0]) == len(gammas[1])  # a shared gamma stays shared in the copy
    assert not gammas[0] & gammas[1]


def test_remove_leaves_a_plain_network_computing_the_eval_mode_function(method):
    name, opts = method
    torch.manual_seed(0)
    d = gannorm.normalize(small_d(), name, **opts)
    if not gannorm.METHODS.get(name).removable:  # layer norm cannot be folded into a weight: refused, model intact
        before = {k: v.clone() for k, v in d.state_dict().items()}
        with pytest.raises(ValueError, match="cannot be folded"):
            gannorm.remove_normalization(d)
        assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
        return
    plain_keys = set(small_d().state_dict())
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():  # move the learnable extras (gamma, MSN gain/bias) away from their start
        for p in d.parameters():
            if p.ndim <= 1:
                p.add_(0.3 * torch.randn_like(p))
    d(x)  # one training forward: vectors and running means move
    d.eval()
    y = d(x)
    gannorm.remove_normalization(d.train())
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in d.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in d.modules())
    assert [type(m) for m in d.modules()] == [type(m) for m in small_d().modules()]  # no extra submodules
    assert set(d.state_dict()) == plain_keys
    torch.testing.assert_close(d(x), y)  # in training mode too: nothing batch-dependent is left
    fresh = small_d()
    fresh.load_state_dict(d.state_dict())
    torch.testing.assert_close(fresh(x), y)


def test_remove_folds_msn_into_the_layer():
    conv = nn.Conv2d(2, 3, 3, bias=False)
    d = gannorm.normalize(nn.Sequential(conv), "msn", warmup=50)
    with torch.no_grad():
        conv.msn.weight.copy_(torch.tensor([2.0, -0.5, 1.5]))
        conv.msn.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
        conv.msn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    w = conv.weight.detach().clone()  # W / sigma in training mode; eval uses the same stored vectors
    gannorm.remove_normalization(d)
    gain, shift = torch.tensor([2.0, -0.5, 1.5]), torch.tensor([0.1, 0.2, -0.3])
    torch.testing.assert_close(conv.weight, gain.view(3, 1, 1, 1) * w, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(conv.bias, shift - gain * torch.tensor([1.0, -2.0, 0.5]))
    assert not hasattr(conv, "msn") and type(conv) is nn.Conv2d


def test_torch_compile_runs(method):
    name, opts = method
    d = gannorm.normalize(small_d(), name, **opts)
    ref = copy.deepcopy(d)
    compiled = torch.compile(d, backend="aot_eager")
    x = torch.randn(4, 3, 8, 8)
    start = vectors(d)
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-6)
    before = vectors(ref)
    for k, v in vectors(d).items():  # the in-place vector update happened under compile too
        torch.testing.assert_close(v, before[k], rtol=1e-5, atol=1e-6)
    if start:
        assert not same(start, vectors(d))


def test_torch_compile_with_inductor():
    d = gannorm.normalize(small_d(), "bssn", scale=1.2)
    ref = copy.deepcopy(d)
    x = torch.randn(4, 3, 8, 8)
    y = torch.compile(d)(x)
    y.sum().backward()
    torch.testing.assert_close(y, ref(x), rtol=1e-4, atol=1e-5)
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("make", [
    lambda: gannorm.spectral_norm(nn.Conv2d(3, 4, 3), warmup=5),
    lambda: gannorm.spectral_norm(nn.ConvTranspose2d(3, 4, 3), warmup=5),
    lambda: gannorm.bidirectional_spectral_norm(nn.Conv2d(3, 4, 3), scale=1.3, warmup=5),
    lambda: gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3, stride=2, padding=1), input_shape=(3, 5, 5), warmup=5),
    lambda: gannorm.strict_spectral_norm(nn.Conv2d(4, 4, 3, padding=1, groups=2, dilation=2), input_shape=(4, 6, 6),
                                         warmup=5),
    lambda: gannorm.strict_spectral_norm(nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1), input_shape=(3, 4, 4),
                                         warmup=5),
    lambda: gannorm.strict_spectral_norm(nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), input_shape=(2, 5, 5),
                                         warmup=5),
])
def test_hand_written_backward_passes_gradcheck(make):
    layer = make().double().eval()  # eval: the stored vectors are constants, sigma = <u, W v>
    plist = layer.parametrizations.weight
    w = plist.original.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: plist[0](t), (w,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["sn", "bsn", "strict_sn"])
def test_backward_with_non_contiguous_incoming_gradient(method):
    # double backward (gradient penalties) can hand the parametrization a non-contiguous gradient
    opts = {"input_shape": (3, 8, 8)} if method == "strict_sn" else {}
    d = gannorm.normalize(small_d(), method, **opts).eval()
    layer = d[2]
    w = layer.weight
    g = torch.randn(w.shape[1], w.shape[0], *w.shape[2:]).transpose(0, 1)  # same shape, non-contiguous
    assert not g.is_contiguous()
    (gw,) = torch.autograd.grad(w, layer.parametrizations.weight.original, g, retain_graph=True)
    (ref,) = torch.autograd.grad(w, layer.parametrizations.weight.original, g.contiguous())
    torch.testing.assert_close(gw, ref)
