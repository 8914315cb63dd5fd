"""The console commands (``[project.scripts]`` in pyproject.toml), one module each:

* ``ctr-train`` (:mod:`.train`): one continual-learning run, or ``--resume`` one;
* ``ctr-predict`` (:mod:`.predict`): classify texts with a checkpoint;
* ``ctr-tables`` (:mod:`.tables`): methods × task orders × seeds, then paper-style tables;
* ``ctr-tune`` (:mod:`.tune`): the equal-budget search on validation data;
* ``ctr-relabel`` (:mod:`.relabel`): rename a trained task's labels, and say how predictions change;
* ``ctr-bench`` (:mod:`ctr_plugin.bench.harness`): what CTR costs against the baselines.

Each module has ``main(argv) -> exit status`` (for tests and for Python callers) and ``cli()``,
which runs ``main`` and turns a :class:`~ctr_plugin.errors.CTRError` into one paragraph on stderr
and exit status 2. ``python -m ctr_plugin.commands.<name>`` runs the same command (what
``accelerate launch -m`` needs).
"""
