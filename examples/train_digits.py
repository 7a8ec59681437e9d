"""SN, BSSN or GN in your own PyTorch training loop: a small hinge-loss GAN on scikit-learn's digits (16x16).

Adopting gannorm is the lines marked ``# gannorm``:

    gannorm.normalize(D, "bssn", scale=1.4, update="step")   # normalize every Conv/Linear weight of D
    gannorm.update_after_step(opt_d, D)                      # one power iteration per optimizer step
    D = gannorm.GradientNormalized(D, "gn")                  # or: normalize D's output instead (GN)

(With the default ``update="forward"``, torch's cadence, the second line is not needed.)

Run it:        python examples/train_digits.py --method bssn --steps 2000 --out samples.png
CI settings:   python examples/train_digits.py --tiny      (or GANNORM_EXAMPLES_TINY=1): 3 steps, tiny nets
"""
from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import gannorm
from gannorm.networks import SNGANCNNDiscriminator, SNGANCNNGenerator


def digits_16px() -> torch.Tensor:
    """scikit-learn's 1797 digits as a [N, 1, 16, 16] float batch in [-1, 1] (your own data goes here)."""
    x = torch.tensor(load_digits().images, dtype=torch.float32) / 16.0 * 2 - 1
    return F.interpolate(x[:, None], size=16, mode="bilinear", align_corners=False)


def build(method: str, width: float, z_dim: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The SNGAN CNN generator and discriminator (any D of yours works the same), D normalized by ``method``."""
    G = SNGANCNNGenerator(resolution=16, channels=1, width=width, z_dim=z_dim)
    D: torch.nn.Module = SNGANCNNDiscriminator(resolution=16, channels=1, width=width)
    if method in ("sn", "bssn"):
        options = {"scale": 1.4} if method == "bssn" else {}
        gannorm.normalize(D, method, update="step", **options)            # gannorm
    elif method == "gn":
        D = gannorm.GradientNormalized(D, "gn")                            # gannorm
    return G, D


def svd_sigmas(D: torch.nn.Module) -> dict[str, float]:
    """The largest singular value of each layer's *effective* weight (what D computes with), by SVD."""
    out = {}
    for name, m in D.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            w = m.weight.detach()                  # a normalized layer's .weight is the effective weight
            out[name] = float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2))
    return out


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="bssn", choices=["none", "sn", "bssn", "gn"])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=float, default=0.5, help="channel multiplier of the SNGAN CNNs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write a grid of samples to this PNG")
    p.add_argument("--tiny", action="store_true", default=os.environ.get("GANNORM_EXAMPLES_TINY") == "1",
                   help="CI settings: 3 steps, batch 16, width 0.125")
    args = p.parse_args(argv)
    if args.tiny:
        args.steps, args.batch_size, args.width = 3, 16, 0.125
    return args


def main(argv=None) -> None:
    args = parse(argv)
    torch.manual_seed(args.seed)
    data, z_dim = digits_16px(), 32
    G, D = build(args.method, args.width, z_dim)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
    if args.method in ("sn", "bssn"):
        gannorm.update_after_step(opt_d, D)                                # gannorm (update="step" only)
    losses = []
    for step in range(args.steps):
        real = data[torch.randint(len(data), (args.batch_size,))]
        fake = G(torch.randn(args.batch_size, z_dim))
        loss_d = F.relu(1 - D(real)).mean() + F.relu(1 + D(fake.detach())).mean()   # hinge loss
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = -D(G(torch.randn(args.batch_size, z_dim))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        losses.append((loss_d.item(), loss_g.item()))
        if step % max(1, args.steps // 10) == 0 or step == args.steps - 1:
            print(f"step {step}: loss_d {losses[-1][0]:.4f} loss_g {losses[-1][1]:.4f}")
    estimates = gannorm.sigmas(D)   # the normalization's own estimates, {"<layer>/sigma": ...}; {} for none/gn
    for name, sigma in svd_sigmas(D).items():
        est = estimates.get(f"{name}/sigma")
        print(f"layer {name}: sigma(W_eff) by SVD {sigma:.4f}" + (f", estimate of sigma(W) {est:.4f}" if est else ""))
    print(f"RESULT method={args.method} steps={args.steps} first_loss_d={losses[0][0]:.6f} "
          f"last_loss_d={losses[-1][0]:.6f} last_loss_g={losses[-1][1]:.6f}")
    if args.out:
        from gannorm.images import image_grid, save_png
        G.eval()
        with torch.no_grad():
            save_png(args.out, image_grid(G(torch.randn(64, z_dim))))
        print(f"samples: {args.out}")


if __name__ == "__main__":
    main()
