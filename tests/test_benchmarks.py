"""`python -m benchmarks --quick`: every benchmark runs beside its peers and lands in the one table.

A smoke test of the suite (tiny sizes, one round): it asserts that the runs work and the outputs are
whole, never a speed (speed targets are the benchmarks' business, reported as ratios).
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks.__main__ import BEGIN, BENCHMARKS, END, embed_in_readme, markdown

from .conftest import REPO, SHARED_DATA


def test_quick_run_of_every_benchmark_writes_json_and_the_markdown_table(tmp_path):
    env = {**os.environ, "SCRATCHGPT_SHARED_DATA": str(SHARED_DATA), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "benchmarks.json").read_text())
    assert summary["quick"] and [r["benchmark"] for r in summary["results"]] == list(BENCHMARKS)
    assert summary["machine"]["versions"]["torch"] and summary["machine"]["cores"] >= 1
    for result in summary["results"]:
        assert not result.get("error"), result
        assert result["headlines"], result["benchmark"]
        for row in result["headlines"]:
            assert row["ours"] > 0 and row["peer_value"] > 0 and row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    table = (tmp_path / "BENCHMARKS.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    assert len(rows) == sum(len(r["headlines"]) for r in summary["results"])
    assert "quick mode" in table


def test_the_table_goes_between_the_readme_markers_and_nowhere_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    info = {"date": "2026-11-30", "cpu": "cpu", "cores": 2, "torch_threads": 2, "python": "3.11", "versions": {}}
    result = {"benchmark": "x", "headlines": [{
        "benchmark": "x", "measure": "m", "ours": 2.0, "peer": "p", "peer_value": 1.0, "ratio": 2.0, "ratio_min": 1.5,
        "ratio_max": 2.5, "unit": "tok/s", "target": 1.3, "met": True,
    }]}  # fmt: skip
    embed_in_readme(markdown([result], info, quick=False), readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title\n\nbefore\n") and text.endswith(f"{END}\nafter\n")
    assert "| x | m | 2 tok/s | p | 1 tok/s | 2.00x [1.50-2.50] | ≥ 1.3x met |" in text
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        embed_in_readme("table", tmp_path / "plain.md")
    assert (tmp_path / "plain.md").read_text() == "no markers"


def test_the_readme_embeds_the_last_full_run():
    readme = (REPO / "README.md").read_text()
    table = (REPO / "benchmarks" / "results" / "BENCHMARKS.md").read_text()
    assert f"{BEGIN}\n{table}{END}" in readme
    assert "quick mode" not in table
