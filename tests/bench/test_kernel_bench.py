"""The kernel benchmark's output schema (no timing is asserted: speed lives in bench/)."""

import json

from eightbit.bench.kernels import run_kernel_benchmark, to_markdown
from eightbit.cli import main

FIELDS = {
    "m",
    "k",
    "n",
    "mode",
    "fp32_gflops",
    "int8_gflops",
    "ratio",
    "ort_fp32_gflops",
    "ort_int8_gflops",
}


def test_report_has_the_documented_fields():
    report = run_kernel_benchmark(m_values=(1, 3), kn_values=((32, 16),), progress=False)
    assert {r["mode"] for r in report["results"]} == {"static", "static-7bit", "dynamic"}
    for row in report["results"]:
        assert set(row) >= FIELDS
        assert all(row[f] > 0 for f in FIELDS - {"mode"})
    assert "| M |" in to_markdown(report)
    kernel_sets = {"avx2", "avx512-vnni", "amx-int8", report["backend"]}
    assert report["machine"]["int8_kernels"] in kernel_sets


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out, md = tmp_path / "k.json", tmp_path / "k.md"
    assert (
        main(["--quiet", "bench", "kernels", "--m", "2", "--json", str(out), "--markdown", str(md)])
        == 0
    )
    data = json.loads(out.read_text())
    assert len(data["results"]) == 3 * 5  # three modes x five (K, N) shapes
    assert md.read_text().startswith("Kernel benchmark")
