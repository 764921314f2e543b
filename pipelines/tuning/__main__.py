"""``python -m pipelines.tuning`` = ``deepline-tune``."""

import sys

from pipelines.tuning.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
