"""``gannorm sweep``: seeded sweeps (variants x grid cells x seeds), a SQLite results store, Ray scale-out.

- :mod:`.spec` reads a sweep file and expands it into runs with stable ids;
- :mod:`.worker` trains, resumes or skips one run (in a local worker process or a Ray task);
- :mod:`.runner` drives the runs and records each in the store (:mod:`.store`);
- :mod:`.results` holds the typed records the report reads.
"""
from .results import RunRow, SweepResults
from .runner import SweepOutcome, default_workers, is_stale, load_results, owns, rebuild, run_sweep
from .spec import RunSpec, SweepSpec, expand, load_sweep, sweep_names
from .store import DB, read_results

__all__ = ["DB", "RunRow", "RunSpec", "SweepOutcome", "SweepResults", "SweepSpec", "default_workers", "expand",
           "is_stale", "load_results", "load_sweep", "owns", "read_results", "rebuild", "run_sweep", "sweep_names"]
