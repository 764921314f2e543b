"""The shared test data beside the checkout: ``../shared/data`` (see ``shared/README.md``).

Resolved from this file, not from a fixed path, so a checkout anywhere (CI's clone included)
finds the ``shared/`` folder laid beside it.
"""

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_SHAKESPEARE = SHARED_DATA / "tinyshakespeare.txt"  # 1,115,394 characters
