"""``python -m pipelines [PIPELINE] [--config F] [--set K=V ...] [--run NAME] [--sweep ...]``."""

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m pipelines"))
