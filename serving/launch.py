"""``make serve``: run TensorFlow Serving's ``tensorflow_model_server`` if installed, else the
embedded server, with the same flags.

``python -m serving.launch --model_name=... --model_base_path=... [flags]`` prints which server it
starts, then replaces itself with it (``exec``), so signals and the exit status are the server's.
Set ``DEEPLINE_SERVER=embedded`` to force the embedded server even when the binary exists.
"""

from __future__ import annotations

import os
import shutil
import sys

BINARY = "tensorflow_model_server"


def choose_server(env: dict | None = None) -> str | None:
    """Path of ``tensorflow_model_server`` to use, or None for the embedded server."""
    env = os.environ if env is None else env
    if env.get("DEEPLINE_SERVER", "").lower() == "embedded":
        return None
    return shutil.which(BINARY, path=env.get("PATH"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    binary = choose_server()
    if binary:
        print(f"[serve] using TensorFlow Serving: {binary} {' '.join(argv)}", flush=True)
        os.execv(binary, [binary, *argv])
    print(f"[serve] {BINARY} not found on PATH: using the embedded deepline server "
          f"(python -m serving {' '.join(argv)})", flush=True)
    from serving.__main__ import main as serve_main

    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
