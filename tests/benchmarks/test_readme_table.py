"""Every script in ``benchmarks/`` has its row (command, what it measures, result file) in benchmarks/README.md."""

from tests.helpers import REPO

PLUMBING = {"__init__.py", "harness.py"}


def test_every_benchmark_script_has_a_row_with_its_module_command():
    readme = (REPO / "benchmarks" / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    scripts = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if p.name not in PLUMBING)
    assert len(scripts) >= 14, scripts
    for script in scripts:
        row = next((line for line in rows if line.startswith(f"| `{script}` |")), None)
        assert row is not None, f"benchmarks/README.md has no table row for {script}"
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert cells[1].startswith(f"`python -m benchmarks.{script[:-3]}"), (script, cells[1])
        assert len(cells) == 4 and all(cells), (script, cells)
