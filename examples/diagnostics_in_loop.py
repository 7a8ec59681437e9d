"""The BSSN paper's diagnostics and gannorm's health warnings inside your own training loop.

Every ``--probe-every`` steps, ``gannorm.diagnostics.probe`` measures D on the current real and fake batch
(per-layer sigma, gradient norms w.r.t. the raw and the effective weight, fan_in * Var(W_eff), input-gradient
norms, Lipschitz bounds) without touching D's gradients or state, and a ``HealthMonitor`` turns the records
into one-line warnings (exploding / vanishing gradients, saturated outputs), each rule once per layer:

    record = probe(D, hinge_d, real, fake, step=step)          # a ProbeRecord (a diagnostics.jsonl line)
    for warning in monitor(record):                            # HealthMonitor(HealthRules(...))
        print(warning.message)

Run it:        python examples/diagnostics_in_loop.py --method none --steps 500 --probe-every 50
CI settings:   python examples/diagnostics_in_loop.py --tiny   (or GANNORM_EXAMPLES_TINY=1)
``--explode-abs`` lowers the exploding-gradient threshold (default 1e3) to see a warning fire on a short run.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F

from gannorm.diagnostics import HealthMonitor, HealthRules, probe
from train_digits import build, digits_16px   # the networks and data of train_digits.py, beside this file


def hinge_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def report(record) -> None:
    """A few numbers of a probe record, one line per layer (``record.to_json()`` has them all)."""
    upper = "n/a" if record.lipschitz_upper is None else f"{record.lipschitz_upper:.4g}"
    print(f"probe step {record.step}: loss_d {record.loss_d:.4f}, Lipschitz bounds: lower "
          f"{record.lipschitz_lower:.4g} <= upper {upper}")
    for name, layer in record.layers.items():
        sigma = "n/a" if layer.sigma is None else f"{layer.sigma:.4f}"
        print(f"  {name}: sigma {sigma}, ||dL/dW|| {layer.grad_raw:.4g}, ||dL/dW_eff|| {layer.grad_effective:.4g}, "
              f"fan_in*Var(W_eff) {layer.var_ratio:.3f}")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="sn", choices=["none", "sn", "bssn", "gn"])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--probe-every", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--explode-abs", type=float, default=1e3, help="exploding-gradient threshold on ||dL/dW||")
    p.add_argument("--jsonl", default=None, help="also append each record to this file (diagnostics.jsonl format)")
    p.add_argument("--tiny", action="store_true", default=os.environ.get("GANNORM_EXAMPLES_TINY") == "1",
                   help="CI settings: 2 steps, a probe at each, batch 8, width 0.125")
    args = p.parse_args(argv)
    if args.tiny:
        args.steps, args.probe_every, args.batch_size, args.width = 2, 1, 8, 0.125
    return args


def main(argv=None) -> None:
    args = parse(argv)
    torch.manual_seed(0)
    data, z_dim = digits_16px(), 32
    G, D = build(args.method, args.width, z_dim)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
    monitor = HealthMonitor(HealthRules(explode_abs=args.explode_abs))
    probe_gen = torch.Generator().manual_seed(0)   # the probe's own randomness (interpolation weights)
    for step in range(args.steps + 1):
        real = data[torch.randint(len(data), (args.batch_size,))]
        fake = G(torch.randn(args.batch_size, z_dim))
        if step % args.probe_every == 0 or step == args.steps:
            record = probe(D, hinge_d, real, fake, step=step, generator=probe_gen)   # leaves D as it was
            report(record)
            for warning in monitor(record):
                print(f"HEALTH {warning.rule} {warning.layer}: {warning.message}")
            if args.jsonl:
                with open(args.jsonl, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record.to_json()) + "\n")
        if step == args.steps:
            break
        loss_d = hinge_d(D(real), D(fake.detach()))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = -D(G(torch.randn(args.batch_size, z_dim))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()


if __name__ == "__main__":
    main()
