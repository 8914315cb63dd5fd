"""Shared command-line plumbing: logging, and turning a user error into one clear paragraph."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import Callable

from .errors import CTRError


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "transformers", "datasets", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's ``main``; a CTRError becomes a wrapped paragraph on stderr and exit status 2."""
    try:
        code = main()
    except CTRError as err:
        print("error: " + textwrap.fill(str(err), width=100, subsequent_indent="  "), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        # A run says what it leaves (experiment.RunInterrupted); anything else claims nothing.
        print(textwrap.fill(f"interrupted: {err}" if str(err) else "interrupted.", width=100, subsequent_indent="  "), file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
