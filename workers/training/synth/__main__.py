"""``python -m workers.training.synth``: see :mod:`workers.training.synth.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
