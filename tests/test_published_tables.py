"""The committed tables and the numbers the docs quote from them cannot drift apart.

Every grid under ``reproducibility/`` must rebuild to its committed ``table.csv`` and
``comparisons.csv`` from its committed runs (a finished run left out of its table fails here: rebuild
with ``ctr-tables --rebuild-only``), and every figure REPRODUCIBILITY.md and the README's
headline copy from those tables must equal them (to the digits shown).
"""

import csv
import re
from pathlib import Path

import pytest

from ctr_plugin.reporting.tables import compare_methods, load_runs, summarize_runs, write_comparisons_csv, write_csv

ROOT = Path(__file__).resolve().parent.parent
GRIDS = sorted(p.parent for p in (ROOT / "reproducibility").glob("*/table.csv"))
NUMBER = r"[−+-]?\d+(?:\.\d+)?"


def number(text: str) -> float:
    return float(text.replace("−", "-").replace("+", ""))


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def table(grid: Path) -> dict[str, dict]:
    return {r["method"]: r for r in rows_of(grid / "table.csv")}


def comparison(grid: Path, reference: str, method: str, metric: str = "final_acc") -> dict:
    found = [r for r in rows_of(grid / "comparisons.csv") if (r["reference"], r["method"], r["metric"]) == (reference, method, metric)]
    assert found, f"{grid.name}: no comparison {reference} vs {method} in comparisons.csv"
    return found[0]


def same(shown: str, value: str, digits: int) -> bool:
    """``shown`` is ``value`` (a csv's 4-decimal figure) rounded to ``digits``: within half a unit
    of its last digit, plus the csv's own rounding (so 77.9450 may show as 77.94 or 77.95)."""
    return abs(number(shown) - float(value)) <= 0.5 * 10**-digits + 5e-5 + 1e-9


def markdown_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]


def sections(text: str) -> dict[str, str]:
    """The body of each ``## <grid>: ...`` section of a markdown file, by grid name."""
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split(":", 1)[0].strip(): p for p in parts[1:] if ":" in p.split("\n", 1)[0]}


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.name)
def test_each_committed_table_rebuilds_from_its_committed_runs(grid, tmp_path):
    runs = load_runs(grid)
    write_csv(summarize_runs(runs), tmp_path / "table.csv")
    assert (tmp_path / "table.csv").read_text() == (grid / "table.csv").read_text(), (
        f"{grid}/table.csv is not what its runs give: rebuild it with ctr-tables --rebuild-only")
    if (grid / "comparisons.csv").exists():
        write_comparisons_csv(compare_methods(runs), tmp_path / "comparisons.csv")
        assert (tmp_path / "comparisons.csv").read_text() == (grid / "comparisons.csv").read_text()


def test_reproducibility_md_quotes_the_committed_tables():
    docs = sections((ROOT / "REPRODUCIBILITY.md").read_text())
    checked = 0
    for grid in GRIDS:
        body = docs.get(grid.name)
        if body is None:
            continue
        methods = table(grid)
        for cells in markdown_rows(body):
            name = cells[0].replace(" (variant)", "")
            if name in methods and len(cells) >= 4:  # | method | runs | acc ± std [lo, hi] | mF1 ± std [lo, hi] | ...
                row = methods[name]
                assert int(cells[1]) == int(row["runs"]), (grid.name, name)
                for cell, metric in ((cells[2], "final_acc"), (cells[3], "final_mf1")):  # one run: its score alone
                    mean, std, lo, hi = re.fullmatch(rf"({NUMBER})(?: ± ({NUMBER}) \[({NUMBER}), ({NUMBER})\])?", cell).groups()
                    assert (std is None) == (row[f"{metric}_ci_low"] == ""), (grid.name, name, metric, "a CI exactly where the table has one")
                    for shown, key in ((mean, "mean"), (std, "std"), (lo, "ci_low"), (hi, "ci_high")):
                        assert shown is None or same(shown, row[f"{metric}_{key}"], 2), (grid.name, name, metric, key, shown)
                checked += 1
            elif " − " in cells[0] and re.fullmatch(r"\d+", cells[1]):  # | ref − method | n | Δ [lo, hi] | w / l | verdict |
                reference, method = cells[0].split(" − ")
                c = comparison(grid, reference, method)
                mean, lo, hi = re.fullmatch(rf"({NUMBER})(?: \[({NUMBER}), ({NUMBER})\])?", cells[2]).groups()
                assert int(cells[1]) == int(c["matched_runs"]), (grid.name, cells[0])
                assert (lo is None) == (c["ci_low"] == ""), (grid.name, cells[0], "a CI exactly where the table has one")
                for shown, key in ((mean, "mean_difference"), (lo, "ci_low"), (hi, "ci_high")):
                    assert shown is None or same(shown, c[key], 2), (grid.name, cells[0], key, shown)
                assert cells[3] == f"{c['wins']} / {c['losses']}" and cells[4] == c["verdict"], (grid.name, cells[0])
                checked += 1
    assert checked >= 10  # the doc's tables were found and read, not skipped


def test_the_readme_headline_quotes_the_committed_tables():
    """The first screen's table: CTR's final accuracy, CTR − one adapter per task, CTR − the best baseline."""
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("## Quick start")]
    rows = [r for r in markdown_rows(head) if r[0].split(" ")[0] in {g.name for g in GRIDS}]
    assert rows, "the README's first screen has no results table"
    for cells in rows:
        grid = ROOT / "reproducibility" / cells[0].split(" ")[0]
        methods = table(grid)
        assert int(cells[1]) == int(methods["ctr"]["runs"])
        mean, lo, hi = re.fullmatch(rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\]", cells[2]).groups()
        for shown, key in ((mean, "mean"), (lo, "ci_low"), (hi, "ci_high")):
            assert same(shown, methods["ctr"][f"final_acc_{key}"], 1), (grid.name, key)
        baselines = [m for m, r in methods.items() if r["group"] == "continual baselines"]
        best = max(baselines, key=lambda m: float(methods[m]["final_acc_mean"]))
        for cell, expected in ((cells[3], "adapter_one"), (cells[4], best)):
            mean, lo, hi, method, verdict = re.fullmatch(rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\] vs (\w+): ([a-z ]+)", cell).groups()
            assert method == expected, f"{grid.name}: the headline names {method}, the table's is {expected}"
            c = comparison(grid, "ctr", method)
            for shown, key in ((mean, "mean_difference"), (lo, "ci_low"), (hi, "ci_high")):
                assert same(shown, c[key], 1), (grid.name, method, key)
            assert verdict == c["verdict"], (grid.name, method)
