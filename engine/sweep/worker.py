"""A sweep worker process: `python -m engine.sweep.worker SETUP_JSON INDEX` (run_sweep starts
these with the cores split between them; BLAS reads its thread count at import, so the
environment is set by the parent before this process imports NumPy)."""

from __future__ import annotations

import sys

from .study import SweepSetup, run_worker


def main() -> int:
    setup = SweepSetup.from_json(sys.argv[1])
    index = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    run_worker(setup, index,
               log=lambda m: print(f"[worker {index}] {m}", file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
