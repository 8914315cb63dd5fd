"""Print the lowest version of every core dependency that pyproject.toml declares, as pip pins
(`name==version`, one a line): the environment `make test-floors` installs. torch is left out:
its floor cannot be installed on a CPU machine from PyPI (the Makefile installs $(TORCH)). Python >= 3.11."""

import re
import sys
from pathlib import Path

import tomllib

LEFT_OUT = {"torch"}

pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
for requirement in pyproject["project"]["dependencies"]:
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)", requirement.strip())
    if match is None:
        sys.exit(f"{requirement!r}: a core dependency must be declared as name>=floor")
    if match[1].lower() not in LEFT_OUT:
        print(f"{match[1]}=={match[2]}")
