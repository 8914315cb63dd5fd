#!/usr/bin/env python
"""The `ctr-bench` command (ctr_plugin/bench/harness.py), runnable from a checkout that is not installed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's ctr_plugin, installed or not

from ctr_plugin.bench.harness import cli, main  # noqa: E402, F401  (main: for callers that import this file)

if __name__ == "__main__":
    cli()
