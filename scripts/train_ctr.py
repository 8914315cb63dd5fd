#!/usr/bin/env python
"""Train a frozen BERT with CTR plugins (or a baseline) over a sequence of classification tasks.

    python scripts/train_ctr.py --output-dir runs/hl5                      # CTR on the five Hu & Liu product domains
    python scripts/train_ctr.py --config offline_mix --output-dir runs/mix  # another shipped sequence, by name
    python scripts/train_ctr.py --method adapter_hat --output-dir runs/hat  # a baseline instead of CTR
    python scripts/train_ctr.py --help                                      # every option

The same program as the ``ctr-train`` command (``make install`` installs the package and both).
Its code is ``ctr_plugin/commands/train.py``; every method trains in the one loop,
``ctr_plugin/continual/loop.py``. A run writes OUTPUT_DIR/checkpoint/, results.json and the plots.
"""

from ctr_plugin.commands.runner import run_main
from ctr_plugin.commands.train import main

if __name__ == "__main__":
    run_main(main)
