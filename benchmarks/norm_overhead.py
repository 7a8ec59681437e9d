"""How much does each weight normalization add to a discriminator training step?

Setup: the SNGAN standard-CNN discriminator at 32x32, full width
(:class:`gannorm.networks.sngan_cnn.SNGANCNNDiscriminator`), on the CPU. One D training step is
a forward on a real batch and on a fake batch, the hinge loss
``relu(1 - D(real)).mean() + relu(1 + D(fake)).mean()``, a backward and an Adam step
(lr 2e-4, betas (0.5, 0.999)). The fakes come from the generator once, before any timing, so
no generator cost is measured. The variants are

* ``none``      -- no normalization (the baseline);
* ``torch_sn``  -- ``torch.nn.utils.parametrizations.spectral_norm`` on every Conv2d and Linear;
* ``sn``        -- ``gannorm.normalize(D, "sn")``;
* ``bssn``      -- ``gannorm.normalize(D, "bssn", scale=1.0)``;
* ``strict_sn`` -- ``gannorm.normalize(D, "strict_sn", input_shape=(3, 32, 32))``.

All variants are deep copies of one seeded base D (same initial weights), built up front in one
process, each with its own Adam. Timing is interleaved to be fair on a noisy machine: in each
of ``--rounds`` rounds every variant runs (in a freshly shuffled order) ``--steps`` individually
timed steps, after ``--warmup`` untimed steps in the first round only; the round's time is the
median of its steps (one stray spike of a shared machine does not count). Reported per variant:
the median ms/step over rounds with min and max, and the ratios to ``none``, ``torch_sn`` and ``sn``, each the
median of the per-round paired ratios (same round), not a ratio of medians.

"Normalization alone" is the cost of the parametrizations in one D call: in training mode, read
``layer.weight`` for every Conv2d/Linear (running each parametrization's forward, power
iteration included) and backward through ``sum(w.sum() for w in weights)``; median over
``--reps`` repetitions per round, minus the same bookkeeping on the raw weights of ``none``
(paired per round, median over rounds). A training step makes two D calls (real and fake), so
the per-step overhead is roughly twice this number.

Run::

    python benchmarks/norm_overhead.py            # full run (several minutes on 2 CPU cores)
    python benchmarks/norm_overhead.py --quick    # smoke run, well under a minute

and paste the printed markdown table.
"""
from __future__ import annotations

import argparse
import copy
import gc
import random
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

import gannorm
from gannorm.networks.sngan_cnn import SNGANCNNDiscriminator, SNGANCNNGenerator

RESOLUTION = 32
INPUT_SHAPE = (3, RESOLUTION, RESOLUTION)
VARIANTS = ("none", "torch_sn", "sn", "bssn", "strict_sn")


# ------------------------------------------------------------------------------ building
def _apply_torch_sn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            torch_spectral_norm(m)
    return model


NORMALIZERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "none": lambda d: d,
    "torch_sn": _apply_torch_sn,
    "sn": lambda d: gannorm.normalize(d, "sn"),
    "bssn": lambda d: gannorm.normalize(d, "bssn", scale=1.0),
    "strict_sn": lambda d: gannorm.normalize(d, "strict_sn", input_shape=INPUT_SHAPE),
}


class Variant:
    """One normalized copy of the base discriminator with its own optimizer."""

    def __init__(self, name: str, base: nn.Module) -> None:
        self.name = name
        self.model = NORMALIZERS[name](copy.deepcopy(base)).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.layers = [m for m in self.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def step(self, real: Tensor, fake: Tensor) -> None:
        """One D training step with the hinge loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.relu(1.0 - self.model(real)).mean() + F.relu(1.0 + self.model(fake)).mean()
        loss.backward()
        self.optimizer.step()

    def weights_only(self) -> None:
        """The effective weights of one D call (parametrizations run here) and a backward through them."""
        weights = [m.weight for m in self.layers]
        sum(w.sum() for w in weights).backward()


# ------------------------------------------------------------------------------ timing
class _NoGC:
    """Keep the garbage collector out of the timed sections."""

    def __enter__(self) -> None:
        gc.collect()
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


def _orders(names: Sequence[str], rounds: int, rng: random.Random) -> Iterator[tuple[int, list[str]]]:
    for r in range(rounds):
        order = list(names)
        rng.shuffle(order)
        yield r, order


def time_steps(variants: dict[str, Variant], real: Tensor, fake: Tensor, rounds: int, steps: int,
               warmup: int, rng: random.Random) -> dict[str, np.ndarray]:
    """Seconds per training step (median of the round's ``steps`` timed steps), ``[rounds]`` per variant."""
    out = {name: np.zeros(rounds) for name in variants}
    for r, order in _orders(list(variants), rounds, rng):
        for name in order:
            v = variants[name]
            if r == 0:
                for _ in range(warmup):
                    v.step(real, fake)
            samples = np.zeros(steps)
            with _NoGC():
                for i in range(steps):
                    t0 = time.perf_counter()
                    v.step(real, fake)
                    samples[i] = time.perf_counter() - t0
            out[name][r] = np.median(samples)
    return out


def time_weights(variants: dict[str, Variant], rounds: int, reps: int,
                 rng: random.Random) -> dict[str, np.ndarray]:
    """Seconds per :meth:`Variant.weights_only` call (median of ``reps``), ``[rounds]`` per variant."""
    out = {name: np.zeros(rounds) for name in variants}
    for r, order in _orders(list(variants), rounds, rng):
        for name in order:
            v = variants[name]
            samples = np.zeros(reps)
            if r == 0:
                for _ in range(3):
                    v.weights_only()
            with _NoGC():
                for i in range(reps):
                    t0 = time.perf_counter()
                    v.weights_only()
                    samples[i] = time.perf_counter() - t0
            v.optimizer.zero_grad(set_to_none=True)
            out[name][r] = np.median(samples)
    return out


# ------------------------------------------------------------------------------ report
def markdown_table(step_times: dict[str, np.ndarray], weight_times: dict[str, np.ndarray]) -> str:
    rows = ["| variant | ms/step median [min-max] | ratio vs none | ratio vs torch SN | ratio vs gannorm SN | "
            "normalization alone ms/call |",
            "|---|---|---|---|---|---|"]
    none, tsn, gsn = step_times["none"], step_times["torch_sn"], step_times["sn"]
    for name, t in step_times.items():
        ms = t * 1e3
        cell = f"{np.median(ms):.1f} [{ms.min():.1f}-{ms.max():.1f}]"
        vs_none = np.median(t / none)
        vs_tsn = np.median(t / tsn)
        vs_gsn = np.median(t / gsn)
        if name == "none":
            alone = "0 (baseline)"
        else:
            alone = f"{np.median(weight_times[name] - weight_times['none']) * 1e3:.2f}"
        rows.append(f"| {name} | {cell} | {vs_none:.3f} | {vs_tsn:.3f} | {vs_gsn:.3f} | {alone} |")
    return "\n".join(rows)


def contended_rounds(step_times: dict[str, np.ndarray], factor: float = 1.5) -> int:
    """Rounds in which some variant took more than ``factor`` times its own fastest round."""
    slow = np.zeros(len(next(iter(step_times.values()))), dtype=bool)
    for t in step_times.values():
        slow |= t > factor * t.min()
    return int(slow.sum())


# ------------------------------------------------------------------------------ GN suite
GN_VARIANTS = ("sn", "gn", "gn_first_order")


def gn_suite(args: argparse.Namespace, rng: random.Random) -> None:
    """Full iterations (D step + G step, non-saturating loss) of SN vs GN vs GN with the first-order G step."""
    import statistics

    from gannorm.gradnorm import GradientNormalized
    torch.manual_seed(args.seed)
    base_d = SNGANCNNDiscriminator(resolution=RESOLUTION)
    base_g = SNGANCNNGenerator(resolution=RESOLUTION)
    real = torch.rand(args.batch, *INPUT_SHAPE) * 2 - 1
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    real = real.contiguous(memory_format=fmt)
    z = torch.randn(args.batch, base_g.z_dim)
    nets = {}
    for name in GN_VARIANTS:
        d = copy.deepcopy(base_d)
        d = gannorm.normalize(d, "sn") if name == "sn" else GradientNormalized(d, "gn", first_order_g=(name != "gn"))
        g = copy.deepcopy(base_g)
        d, g = d.to(memory_format=fmt), g.to(memory_format=fmt)  # train.channels_last, the same for all variants
        nets[name] = (d, g, torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.9)),
                      torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.9)))

    def d_step(name: str) -> None:
        d, g, od, _ = nets[name]
        with torch.no_grad():
            fake = g(z)
        loss = F.softplus(-d(real)).mean() + F.softplus(d(fake)).mean()
        od.zero_grad(set_to_none=True)
        loss.backward(inputs=list(d.parameters()))  # as the trainer: only what the optimizer steps
        od.step()

    def g_step(name: str) -> None:
        d, g, _, og = nets[name]
        d.requires_grad_(False)
        loss = F.softplus(-d(g(z))).mean()
        og.zero_grad(set_to_none=True)
        loss.backward()
        og.step()
        d.requires_grad_(True)

    times = {n: {"d": [], "g": []} for n in GN_VARIANTS}
    for n in GN_VARIANTS:
        for _ in range(max(1, args.warmup)):
            d_step(n)
            g_step(n)
    for _, order in _orders(list(GN_VARIANTS), args.rounds, rng):
        for n in order:
            for part, fn in (("d", d_step), ("g", g_step)):
                ts = []
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    fn(n)
                    ts.append(time.perf_counter() - t0)
                times[n][part].append(statistics.median(ts))
    it = {n: np.array(times[n]["d"]) + np.array(times[n]["g"]) for n in GN_VARIANTS}
    print(f"# Function-level normalization: one iteration (D step on {args.batch} real + {args.batch} fake, "
          f"G step on {args.batch}), SNGAN CNN {RESOLUTION}x{RESOLUTION}, full width, NS loss, Adam, "
          f"{'channels_last' if args.channels_last else 'contiguous (NCHW)'} memory format")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, rounds {args.rounds}, steps/round "
          f"{args.steps}\n")
    print("| variant | D step ms | G step ms | iteration ms median [min-max] | ratio vs SN iteration |")
    print("|---|---|---|---|---|")
    for n in GN_VARIANTS:
        ms = it[n] * 1e3
        print(f"| {n} | {np.median(times[n]['d']) * 1e3:.0f} | {np.median(times[n]['g']) * 1e3:.0f} | "
              f"{np.median(ms):.0f} [{ms.min():.0f}-{ms.max():.0f}] | {np.median(it[n] / it['sn']):.3f} |")
    g_ratio = np.median(np.array(times["gn_first_order"]["g"]) / np.array(times["gn"]["g"]))
    print(f"\nfirst-order G step / double-backprop G step (same round, median): {g_ratio:.3f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (>= 7)")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per variant per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the first round")
    p.add_argument("--batch", type=int, default=64, help="real and fake batch size (each)")
    p.add_argument("--reps", type=int, default=50, help="weights-only repetitions per variant per round")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: rounds 7, steps 1, warmup 1, batch 8, reps 10")
    p.add_argument("--verbose", action="store_true", help="also print the per-round ms/step")
    p.add_argument("--gn", action="store_true",
                   help="instead: full iterations of SN vs GN vs GN with the first-order G step")
    p.add_argument("--channels-last", action="store_true",
                   help="with --gn: every variant's G, D and data in channels_last (train.channels_last=true)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batch, args.reps = 7, 1, 1, 8, 10
    if args.rounds < 7:
        p.error(f"--rounds must be >= 7, got {args.rounds}")
    if min(args.steps, args.batch, args.reps, args.threads) < 1 or args.warmup < 0:
        p.error("--steps, --batch, --reps and --threads must be >= 1, --warmup >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    if args.gn:
        gn_suite(args, rng)
        return

    base = SNGANCNNDiscriminator(resolution=RESOLUTION)
    generator = SNGANCNNGenerator(resolution=RESOLUTION)
    with torch.no_grad():
        real = torch.rand(args.batch, *INPUT_SHAPE) * 2 - 1
        fake = generator(torch.randn(args.batch, generator.z_dim))
    variants = {name: Variant(name, base) for name in VARIANTS}

    print(f"# D-step overhead of weight normalizations (SNGAN CNN D, {RESOLUTION}x{RESOLUTION}, full width)")
    print(f"torch {torch.__version__}, gannorm {gannorm.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch} real + {args.batch} fake, rounds {args.rounds}, steps/round {args.steps}, "
          f"warm-up steps {args.warmup}, weights-only reps/round {args.reps}")
    print(flush=True)

    step_times = time_steps(variants, real, fake, args.rounds, args.steps, args.warmup, rng)
    weight_times = time_weights(variants, args.rounds, args.reps, rng)

    print(markdown_table(step_times, weight_times))
    print()
    print("ms/step: median over rounds [min-max]; ratios: median over rounds of the same-round ratio; "
          "normalization alone: weights + backward of one D call, minus the raw-weight baseline "
          "(a step makes two D calls).")
    n_slow = contended_rounds(step_times)
    if n_slow:
        print(f"\nWARNING: {n_slow} of {args.rounds} rounds were > 1.5x a variant's fastest round: the machine was "
              "busy. With as many threads as cores, one busy core stalls every parallel op and the step "
              "times (and ratios) then measure the scheduler. Rerun on a quiet machine, or with --threads 1.")
    if args.verbose:
        print()
        for name, t in step_times.items():
            print(f"{name:>10} ms/step per round: " + " ".join(f"{x * 1e3:.1f}" for x in t))
        for name, t in weight_times.items():
            print(f"{name:>10} weights-only ms per round: " + " ".join(f"{x * 1e3:.3f}" for x in t))


if __name__ == "__main__":
    main()
