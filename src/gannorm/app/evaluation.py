"""``gannorm eval`` and ``gannorm fid-stats``: evaluate a run's checkpoint, build reference statistics."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..data import load_dataset
from ..errors import GannormError
from ..fileio import atomic_write_text
from ..metrics.evaluate import EvalOptions, evaluate, make_extractor, real_subset
from ..metrics.frechet import feature_statistics, save_statistics
from ..runfolder import RunFolder
from .sampling import load_generator


def evaluate_run(run_dir: str | Path, options: EvalOptions, output: str | Path | None = None) -> dict[str, Any]:
    """Evaluate the EMA (if the run has one) and the raw generator of ``run_dir``'s checkpoint.

    Writes ``{"step", "results": {"ema": ..., "raw": ...}}`` as JSON to ``output`` (default
    ``RUN/eval_step<step>.json``) and returns it.
    """
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint()  # read once; both generators come from it
    step, cfg = int(state["step"]), from_dict(state["config"])
    data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.resolution, **cfg.data.options)
    results = {}
    for kind in (["ema"] if state.get("G_ema") is not None else []) + ["raw"]:
        g, _, _ = load_generator(folder.path, use_ema=(kind == "ema"), state=state)
        results[kind] = evaluate(g, data, cfg.model.z_dim, options)
    out = {"run": str(folder.path), "step": step, "results": results}
    path = Path(output) if output else folder.eval_result_path(step)
    atomic_write_text(path, json.dumps(out, indent=1) + "\n")
    out["path"] = str(path)
    return out


def format_results(out: dict[str, Any]) -> str:
    lines = [f"run {out['run']} at G step {out['step']}"]
    for kind, res in out["results"].items():
        p = res["protocol"]
        lines.append(f"  {kind} generator ({p['num_generated']} generated vs {p['num_real']} real; {p['real_split']}):")
        for name, vals in res["metrics"].items():
            extra = ", ".join(f"{k} {v:.4g}" for k, v in vals.items() if k != "value")
            lines.append(f"    {name:<6} {vals['value']:.4f}" + (f"  ({extra})" if extra else ""))
    lines.append(f"  written to {out['path']}")
    return "\n".join(lines)


def fid_stats(dataset: str, output: str | Path, *, root: str | None = None, resolution: int | None = None,
              num: int | None = None, seed: int = 0, batch_size: int = 50, inception_weights: str | None = None,
              backend: str = "auto", progress: bool = True) -> dict[str, Any]:
    """Write TTUR-compatible ``mu``/``sigma`` of the Inception pool3 features of ``dataset`` to ``output``."""
    output = Path(output)
    if output.suffix != ".npz":
        raise GannormError(f"output {output} must be an .npz file")
    data = load_dataset(dataset, root, resolution)
    if data.kind != "image":
        raise GannormError(f"fid-stats needs an image dataset; {dataset} holds {data.kind}s")
    x, protocol = real_subset(data, num or len(data), seed)
    extract, desc = make_extractor("inception", dataset=dataset, resolution=data.shape[-1], batch_size=batch_size,
                                   progress=progress, inception_weights=inception_weights, inception_backend=backend)
    mu, sigma = feature_statistics(extract(x)["features"])
    save_statistics(output, mu, sigma)
    return {"path": str(output), "num": len(x), **protocol, **desc}
