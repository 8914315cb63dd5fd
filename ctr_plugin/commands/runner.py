"""Shared command-line plumbing: logging, and turning a user error into one clear paragraph."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable

from ctr_plugin._version import __version__
from ctr_plugin.errors import CTRError


def command_parser(description: str | None) -> argparse.ArgumentParser:
    """The parser every command starts from: its module docstring as the help text, kept as
    written, and ``--version``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s (ctr_plugin {__version__})")
    return parser


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: a whole number from ``low`` (to ``high``); anything else is refused
    by argparse (usage, exit status 2) with the range in the message."""
    allowed = f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range: it must be {allowed}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "filelock", "matplotlib", "transformers", "datasets", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _paragraph(text: str) -> str:
    # Paths and flags are never split: a reader can copy them.
    return textwrap.fill(text, width=100, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)


def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's ``main``; a CTRError becomes a wrapped paragraph on stderr and exit status 2."""
    try:
        code = main()
    except CTRError as err:
        print(_paragraph(f"error: {err}"), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        # A run says what it leaves (ctr_plugin.experiments.run.RunInterrupted); anything else claims nothing.
        print(_paragraph(f"interrupted: {err}" if str(err) else "interrupted."), file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
