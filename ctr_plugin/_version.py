"""The package's version: the one place it is written (pyproject.toml reads it). Semantic versioning;
each release is a git tag ``v<version>`` and has its entry in CHANGELOG.md."""

__version__ = "0.2.0"
