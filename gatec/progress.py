"""Progress on a terminal: each stage of long work on one line of stderr (and a bar where the
work counts steps), nothing when stderr is not a terminal or `--quiet` was given."""
from __future__ import annotations

import sys
import time
from contextlib import contextmanager

quiet = False  # set by the CLI's --quiet


def shown() -> bool:
    return not quiet and sys.stderr.isatty()


@contextmanager
def stage(what: str):
    """`gatec: <what> ...` when the stage starts, `done in N s` when it ends."""
    if not shown():
        yield
        return
    print(f"gatec: {what} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"gatec: {what}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def steps(iterable, what: str, total: int | None = None):
    """`iterable` with a bar on the terminal."""
    if not shown():
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=f"gatec: {what}", total=total, file=sys.stderr, leave=False)
