"""How long does refusing a YAML alias bomb take? (The speed claim that used to be a wall-clock assert in tests.)

The "billion laughs" bomb -- nine anchors, each a list of nine aliases of the previous one: 9**9 strings once
expanded, from under 1 KB of text -- is given to :func:`gannorm.yamlsafe.load` (the loader of every config,
sweep file and override) ``--reps`` times; the median and the largest time are printed.
The tests check the refusal without a clock (one pass over the parser's events, nothing constructed:
tests/test_yamlsafe.py) and its memory (tests/reliability/test_hostile_input.py).

    python benchmarks/yaml_bomb.py [--reps 50]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

from gannorm import yamlsafe


def bomb(levels: int = 9, fan: int = 9) -> str:
    names = [f"l{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * fan)}]"]
    lines += [f"{b}: &{b} [{', '.join(['*' + a] * fan)}]" for a, b in itertools.pairwise(names)]
    return "\n".join(lines) + "\n"


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def refuse(text: str) -> None:
    try:
        yamlsafe.load(text)
    except yamlsafe.YamlError:
        return
    raise SystemExit("the bomb was not refused")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=50)
    args = p.parse_args()
    text = bomb()
    ours = timed(lambda: refuse(text), args.reps)
    print(f"bomb: {len(text)} bytes, 9**9 values once expanded")
    print(f"gannorm.yamlsafe.load refuses it: median {1e3 * statistics.median(ours):.2f} ms, "
          f"max {1e3 * max(ours):.2f} ms over {args.reps}")


if __name__ == "__main__":
    main()
