"""The committed tables and the numbers the docs quote from them cannot drift apart.

Every grid under ``reproducibility/`` must rebuild to its committed ``table.csv`` and
``comparisons.csv`` from its committed runs (a finished run left out of its table fails here: rebuild
with ``ctr-tables --rebuild-only``), and every figure REPRODUCIBILITY.md, the README and docs/*.md
copy from those tables (or from the tuned-options file) must equal them (to the digits shown).
A superseded grid (one REPRODUCIBILITY.md no longer presents in a section of its own) is quoted
only where the text says it is the old table.
"""

import csv
import json
import re
from pathlib import Path

import pytest
import yaml

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
    found = [
        r
        for r in rows_of(grid / "comparisons.csv")
        if (r["reference"], r["method"], r["metric"]) == (reference, method, metric)
    ]
    assert found, f"{grid.name}: no comparison {reference} vs {method} in comparisons.csv"
    return found[0]


def same(shown: str, value: str, digits: int) -> bool:
    """``shown`` is ``value`` (a csv's 4-decimal figure) rounded to ``digits``: within half a unit
    of its last digit, plus the csv's own rounding (so 77.9450 may show as 77.94 or 77.95)."""
    return abs(number(shown) - float(value)) <= 0.5 * 10**-digits + 5e-5 + 1e-9


def markdown_rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")
    ]


def sections(text: str) -> dict[str, str]:
    """The body of each ``## <grid>: ...`` section of a markdown file, by grid name."""
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split(":", 1)[0].strip(): p for p in parts[1:] if ":" in p.split("\n", 1)[0]}


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.name)
def test_each_committed_table_rebuilds_from_its_committed_runs(grid, tmp_path):
    from ctr_plugin.experiments.grid_summary import compare_methods, load_runs, summarize_runs
    from ctr_plugin.experiments.grid_tables import write_comparisons_csv, write_csv

    runs = load_runs(grid)
    write_csv(summarize_runs(runs), tmp_path / "table.csv")
    assert (tmp_path / "table.csv").read_text() == (grid / "table.csv").read_text(), (
        f"{grid}/table.csv is not what its runs give: rebuild it with ctr-tables --rebuild-only"
    )
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
                    mean, std, lo, hi = re.fullmatch(
                        rf"({NUMBER})(?: ± ({NUMBER}) \[({NUMBER}), ({NUMBER})\])?", cell
                    ).groups()
                    assert (std is None) == (row[f"{metric}_ci_low"] == ""), (
                        grid.name,
                        name,
                        metric,
                        "a CI exactly where the table has one",
                    )
                    for shown, key in ((mean, "mean"), (std, "std"), (lo, "ci_low"), (hi, "ci_high")):
                        assert shown is None or same(shown, row[f"{metric}_{key}"], 2), (
                            grid.name,
                            name,
                            metric,
                            key,
                            shown,
                        )
                checked += 1
            elif " − " in cells[0] and re.fullmatch(
                r"\d+", cells[1]
            ):  # | ref − method | n | Δ [lo, hi] | w / l | verdict |
                reference, method = cells[0].split(" − ")
                c = comparison(grid, reference, method)
                mean, lo, hi = re.fullmatch(rf"({NUMBER})(?: \[({NUMBER}), ({NUMBER})\])?", cells[2]).groups()
                assert int(cells[1]) == int(c["matched_runs"]), (grid.name, cells[0])
                assert (lo is None) == (c["ci_low"] == ""), (
                    grid.name,
                    cells[0],
                    "a CI exactly where the table has one",
                )
                for shown, key in ((mean, "mean_difference"), (lo, "ci_low"), (hi, "ci_high")):
                    assert shown is None or same(shown, c[key], 2), (grid.name, cells[0], key, shown)
                assert cells[3] == f"{c['wins']} / {c['losses']}" and cells[4] == c["verdict"], (grid.name, cells[0])
                checked += 1
    assert checked >= 10  # the doc's tables were found and read, not skipped


def test_the_readme_headline_quotes_the_committed_tables():
    """The first screen's table: CTR's final accuracy, CTR − one adapter per task, CTR − the best baseline."""
    text = (ROOT / "README.md").read_text()
    head = text[: text.index("\n## ")]  # the first screen: everything before the first section
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
            mean, lo, hi, method, verdict = re.fullmatch(
                rf"({NUMBER}) \[({NUMBER}), ({NUMBER})\] vs (\w+): ([a-z ]+)", cell
            ).groups()
            assert method == expected, f"{grid.name}: the headline names {method}, the table's is {expected}"
            c = comparison(grid, "ctr", method)
            for shown, key in ((mean, "mean_difference"), (lo, "ci_low"), (hi, "ci_high")):
                assert same(shown, c[key], 1), (grid.name, method, key)
            assert verdict == c["verdict"], (grid.name, method)


# ---- every figure the README and docs/*.md quote from a committed table --------------------------

CURRENT = [g for g in GRIDS if g.name in sections((ROOT / "REPRODUCIBILITY.md").read_text())]
SUPERSEDED = [g for g in GRIDS if g not in CURRENT]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# docs/ctr_diagnosis.md's intervals are validation results (docs/ctr_diagnosis/runs.jsonl), not the
# committed test tables: its figures from those tables are checked one by one in QUOTES below.
VALIDATION_DOCS = {ROOT / "docs" / "ctr_diagnosis.md"}
INTERVAL = re.compile(rf"({NUMBER})(?: %)? \[({NUMBER}), ({NUMBER})\]")
FIGURE = re.compile(r"(?<![\w.−+-])[−+-]?\d+(?:\.\d+)?(?![\w.])")


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def digits(shown: str) -> int:
    return len(shown.split(".")[1]) if "." in shown else 0


def committed_intervals(grids: list[Path]) -> list[tuple[float, float, float]]:
    """(mean, low, high) of every interval in the grids' tables: each metric of table.csv (and
    the transfer against ONE), each paired comparison of comparisons.csv."""
    found = []
    for grid in grids:
        for row in rows_of(grid / "table.csv"):
            for key in row:
                if key.endswith("_ci_low") and row[key] != "":
                    stem = key[: -len("_ci_low")]
                    mean = row.get(f"{stem}_mean", row.get(stem))
                    found.append((float(mean), float(row[key]), float(row[f"{stem}_ci_high"])))
        if (grid / "comparisons.csv").exists():
            found += [
                (float(r["mean_difference"]), float(r["ci_low"]), float(r["ci_high"]))
                for r in rows_of(grid / "comparisons.csv")
                if r["ci_low"] != ""
            ]
    return found


@pytest.mark.parametrize("doc", [d for d in DOCS if d not in VALIDATION_DOCS], ids=lambda d: d.name)
def test_every_interval_the_docs_quote_is_in_a_current_committed_table(doc):
    """A figure with its CI ("83.5 [81.4, 85.5]") must be one of the current tables' (a stale copy
    of an older table, or a typo, fails); "ahead by 3.7 [1.6, 5.9]" may quote a difference negated."""
    intervals = committed_intervals(CURRENT)
    for shown in INTERVAL.findall(flat(doc.read_text())):
        n = max(digits(x) for x in shown)
        values = [number(x) for x in shown]
        for mean, lo, hi in intervals:
            for candidate in ((mean, lo, hi), (-mean, -hi, -lo)):
                if all(abs(v - c) <= 0.5 * 10**-n + 5e-5 + 1e-9 for v, c in zip(values, candidate)):
                    break
            else:
                continue
            break
        else:
            pytest.fail(
                f"{doc.name}: {shown[0]} [{shown[1]}, {shown[2]}] is in no current committed table "
                f"({', '.join(g.name for g in CURRENT)})"
            )


def grid(name: str) -> Path:
    return ROOT / "reproducibility" / name


def cell(name: str, method: str, column: str):
    return lambda: table(grid(name))[method][column]


def paired(name: str, method: str, column: str, reference: str = "ctr"):
    return lambda: comparison(grid(name), reference, method)[column]


def interval(name: str, method: str, reference: str = "ctr"):
    return [paired(name, method, c, reference) for c in ("mean_difference", "ci_low", "ci_high")]


def acc(name: str, method: str):
    return [cell(name, method, f"final_acc_{c}") for c in ("mean", "ci_low", "ci_high")]


def tuned(method: str):
    return lambda: yaml.safe_load((ROOT / "data_configs" / "hl5_products.tuned.yaml").read_text())["methods"][method][
        "objective"
    ]


def first_task_losses(name: str, method: str) -> list[float]:
    """How much each run's first task lost between being learned and the end (its forgetting)."""
    runs = sorted((grid(name) / "runs" / method).glob("*/results.json"))
    return [m[0][0] - m[-1][0] for m in (json.loads(r.read_text())["acc_matrix"] for r in runs)]


def largest_of_ten_run_methods(name: str, method: str, column: str):
    """``method``'s figure if it is the largest of the methods with 10 runs, else nan (which fails)."""
    rows = [r for r in table(grid(name)).values() if int(r["runs"]) == 10]
    top = max(rows, key=lambda r: float(r[column]))
    return lambda: float(top[column]) if top["method"] == method else float("nan")


HL5, MIX, OLD = "hl5_products", "offline_mix", "hl5"
# (file, the text as it reads, where each of its figures comes from, in order)
QUOTES = [
    (
        "README.md",
        "(7 wins in 10 on hl5_products",
        [paired(HL5, "adapter_one", "wins"), paired(HL5, "adapter_one", "matched_runs")],
    ),
    (
        "README.md",
        "(EWC on hl5_products, 0 wins in 10; replay on offline_mix, 0 wins in 3)",
        [
            paired(HL5, "ewc", "wins"),
            paired(HL5, "ewc", "matched_runs"),
            paired(MIX, "replay", "wins"),
            paired(MIX, "replay", "matched_runs"),
        ],
    ),
    ("docs/methods.md", "CTR ends at 83.46 [81.42, 85.50] % final accuracy", acc(HL5, "ctr")),
    (
        "docs/methods.md",
        "one adapter per task (+0.65 [−2.06, +3.36], 7 wins in 10)",
        [
            *interval(HL5, "adapter_one"),
            paired(HL5, "adapter_one", "wins"),
            paired(HL5, "adapter_one", "matched_runs"),
        ],
    ),
    ("docs/methods.md", "the HAT adapter (+0.05 [−2.59, +2.69])", interval(HL5, "adapter_hat")),
    ("docs/methods.md", "the naive adapter (+0.50 [−2.79, +3.80])", interval(HL5, "adapter_ncl")),
    ("docs/methods.md", "LwF (−1.66 [−3.64, +0.32])", interval(HL5, "lwf")),
    (
        "docs/methods.md",
        "(−3.73 [−5.89, −1.57], 0 wins in 10)",
        [*interval(HL5, "ewc"), paired(HL5, "ewc", "wins"), paired(HL5, "ewc", "matched_runs")],
    ),
    ("docs/methods.md", "to replay (−2.81 [−5.29, −0.33])", interval(HL5, "replay")),
    ("docs/methods.md", "LoRA-NCL (−2.11 [−4.10, −0.11])", interval(HL5, "lora_ncl")),
    (
        "docs/methods.md",
        "(learning accuracy 84.25, adapter_one 82.81, adapter_ncl 85.95)",
        [cell(HL5, m, "forward_acc_mean") for m in ("ctr", "adapter_one", "adapter_ncl")],
    ),
    (
        "docs/methods.md",
        "(std 2.85 in final accuracy; 4.92 in macro-F1, the largest of the 10-run methods)",
        [cell(HL5, "ctr", "final_acc_std"), largest_of_ten_run_methods(HL5, "ctr", "final_mf1_std"), lambda: 10],
    ),
    (
        "docs/methods.md",
        "in 4 of its 10 runs it forgets its first task, by 4–19 points",
        [
            lambda: sum(d > 0 for d in first_task_losses(HL5, "ctr")),
            lambda: len(first_task_losses(HL5, "ctr")),
            lambda: min(d for d in first_task_losses(HL5, "ctr") if d > 0),
            lambda: max(first_task_losses(HL5, "ctr")),
        ],
    ),
    ("docs/methods.md", "CTR ends at 68.89 [63.86, 73.92]", acc(MIX, "ctr")),
    ("docs/methods.md", "one adapter per task (−0.59 [−5.58, +4.39])", interval(MIX, "adapter_one")),
    ("docs/methods.md", "EWC (−0.48 [−4.51, +3.54])", interval(MIX, "ewc")),
    (
        "docs/methods.md",
        "(−6.28 [−10.80, −1.75], 0 wins in 3)",
        [*interval(MIX, "replay"), paired(MIX, "replay", "wins"), paired(MIX, "replay", "matched_runs")],
    ),
    (
        "docs/methods.md",
        "It forgets 4.75 points, about twice the HAT adapter's 2.36 and a quarter of the naive adapter's 17.86",
        [cell(MIX, m, "forgetting_rate_mean") for m in ("ctr", "adapter_hat", "adapter_ncl")],
    ),
    (
        "docs/methods.md",
        "CTR's validation accuracy is 88.77 against 88.89 for one adapter per task, 86.91 for adapter_hat, "
        "87.49 for LwF and 89.65 for replay",
        [tuned(m) for m in ("ctr", "adapter_one", "adapter_hat", "lwf", "replay")],
    ),
    (
        "docs/methods.md",
        "put CTR at 81.17 against 86.42 for one adapter per task",
        [cell(OLD, "ctr", "final_acc_mean"), cell(OLD, "adapter_one", "final_acc_mean")],
    ),
    (
        "docs/ctr_diagnosis.md",
        "puts CTR at 81.2 % final accuracy against 86.4 % for one adapter per task",
        [cell(OLD, "ctr", "final_acc_mean"), cell(OLD, "adapter_one", "final_acc_mean")],
    ),
    ("docs/ctr_diagnosis.md", "`adapter_one` at −5.26 [−11.46, +0.95]", interval(OLD, "adapter_one")),
    (
        "docs/ctr_diagnosis.md",
        "CTR ends at 83.5 and one adapter per task at 82.8, a paired difference of +0.7 [−2.1, +3.4]",
        [
            cell(HL5, "ctr", "final_acc_mean"),
            cell(HL5, "adapter_one", "final_acc_mean"),
            *interval(HL5, "adapter_one"),
        ],
    ),
    (
        "docs/ctr_diagnosis.md",
        "4 of CTR's 10 runs forget their first task",
        [lambda: sum(d > 0 for d in first_task_losses(HL5, "ctr")), lambda: len(first_task_losses(HL5, "ctr"))],
    ),
    (
        "docs/ctr_diagnosis.md",
        "ahead of CTR by 3.7 [1.6, 5.9] in all 10 matched runs",
        [
            lambda: -float(comparison(grid(HL5), "ctr", "ewc")["mean_difference"]),
            lambda: -float(comparison(grid(HL5), "ctr", "ewc")["ci_high"]),
            lambda: -float(comparison(grid(HL5), "ctr", "ewc")["ci_low"]),
            paired(HL5, "ewc", "losses"),
        ],
    ),
    (
        "docs/ctr_diagnosis.md",
        "CTR 68.9, one adapter per task 69.5, −0.6 [−5.6, +4.4]",
        [
            cell(MIX, "ctr", "final_acc_mean"),
            cell(MIX, "adapter_one", "final_acc_mean"),
            *interval(MIX, "adapter_one"),
        ],
    ),
    (
        "docs/ctr_diagnosis.md",
        "replay ahead by 6.3",
        [lambda: -float(comparison(grid(MIX), "ctr", "replay")["mean_difference"])],
    ),
]


@pytest.mark.parametrize(("doc", "quote", "sources"), QUOTES, ids=[f"{d}: {q[:40]}" for d, q, _ in QUOTES])
def test_the_docs_quote_the_committed_tables(doc, quote, sources):
    assert flat(quote) in flat((ROOT / doc).read_text()), (
        f"{doc} no longer says {quote!r}: update QUOTES with the text"
    )
    shown = FIGURE.findall(quote)
    assert len(shown) == len(sources), (doc, quote, shown)
    for figure, source in zip(shown, sources):
        assert same(figure, float(source()), digits(figure)), (
            f"{doc}: {quote!r} shows {figure}, the committed figure is {float(source()):.4f}"
        )


def test_the_docs_name_the_old_table_when_they_quote_it():
    """A superseded grid's headline figures (CTR's final accuracy, CTR − one adapter per task)
    appear only in paragraphs that say they are the old table."""
    for old in SUPERSEDED:
        ctr, gap = (
            float(table(old)["ctr"]["final_acc_mean"]),
            float(comparison(old, "ctr", "adapter_one")["mean_difference"]),
        )
        shown = {f"{v:.{n}f}".replace("-", "−") for v in (ctr, gap) for n in (1, 2)}
        for doc in DOCS:
            if doc in VALIDATION_DOCS:
                continue
            for paragraph in re.split(r"\n\s*\n", doc.read_text()):
                if any(re.search(rf"(?<![\d.]){re.escape(s)}(?![\d])", paragraph) for s in shown):
                    assert re.search(rf"\bold\b|untuned|reproducibility/{old.name}/", paragraph), (
                        f"{doc.name} quotes the superseded {old.name} table as if current:\n{paragraph}"
                    )


def test_the_checks_read_the_docs():
    """The checks above found what they check (a renamed file or section would silently skip them)."""
    assert CURRENT and [g.name for g in SUPERSEDED] == [OLD], (CURRENT, SUPERSEDED)
    assert len(INTERVAL.findall(flat((ROOT / "README.md").read_text()))) >= 6
    assert {d for d, _, _ in QUOTES} >= {"README.md", "docs/methods.md", "docs/ctr_diagnosis.md"}
