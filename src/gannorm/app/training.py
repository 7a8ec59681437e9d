"""``gannorm train``: train from a preset, a YAML file or a config, resume a run, train a comparison's variants."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .. import config as config_mod
from ..config import Config
from ..runfolder import RunFolder
from ..training import RunResult, Trainer


def resolve_config(config: Config | str | dict | None, overrides: Sequence[str] = ()) -> Config:
    """A :class:`Config` from a Config, a dict, a preset name or a YAML path (None: the default job)."""
    if isinstance(config, Config):
        return config_mod.apply_overrides(config, overrides)
    if isinstance(config, dict):
        return config_mod.apply_overrides(config_mod.from_dict(config), overrides)
    return config_mod.load(config, overrides)


def train(config: Config | str | dict | None = None, overrides: Sequence[str] = ()) -> RunResult:
    """Train from a :class:`Config`, a preset name or YAML path, or a dict; returns a :class:`RunResult`."""
    return Trainer(resolve_config(config, overrides)).run()


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunResult:
    """Continue the run in ``run_dir`` from its checkpoint (e.g. ``overrides=["train.steps=5000"]``)."""
    folder = RunFolder.open(run_dir)
    folder.load_checkpoint()  # a one-line error now if it is missing or damaged
    return Trainer(folder.read_config(overrides), resume=folder.path).run()


@dataclass
class VariantOutcome:
    """One variant of a comparison preset: its name and how its run ended."""
    name: str
    result: RunResult

    @property
    def scores(self) -> dict[str, float]:
        """The last evaluation's headline values (``eval/<metric>``, without the ``_std`` entries)."""
        return {k[5:]: v for k, v in self.result.last.items() if k.startswith("eval/") and not k.endswith("_std")}


def train_variants(preset: str, overrides: Sequence[str] = (), *, announce=None) -> list[VariantOutcome]:
    """Train one run per variant of a comparison preset (its ``variants:`` section), in order.

    ``announce(name, extra)`` is called before each run (the command line prints a header there).
    """
    outcomes = []
    for name, extra in config_mod.load_variants(preset).items():
        if announce is not None:
            announce(name, extra)
        result = train(preset, [*extra, f"train.run_name={Path(preset).stem}-{name}", *overrides])
        outcomes.append(VariantOutcome(name, result))
    return outcomes


def variants_table(outcomes: Sequence[VariantOutcome]) -> str:
    """A Markdown table of the variants' outcomes and last scores."""
    keys = sorted({k for o in outcomes for k in o.scores})
    lines = ["| variant | status | G steps | seconds | " + " | ".join(keys) + " | run folder |",
             "|---|---|---|---|" + "---|" * len(keys) + "---|"]
    for o in outcomes:
        cells = " | ".join(f"{o.scores[k]:.4g}" if k in o.scores else "-" for k in keys)
        r = o.result
        lines.append(f"| {o.name} | {r.status} | {r.step} | {r.seconds:.0f} | {cells} | {r.run_dir} |")
    return "\n".join(lines)
