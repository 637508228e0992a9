"""The docs stay true to the code: the README's front door, its quick starts run as written (and exit
cleanly), the generated references are current, and the mkdocs site builds with --strict."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from causalguard.metrics_reference import render

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 170, f"README.md has {len(lines)} lines; move detail to docs/"
    for target in re.findall(r"\]\(([^)#\s]+)", README.read_text()):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_the_metrics_reference_is_current() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    assert committed == render(), "regenerate: .venv/bin/python -m causalguard.metrics_reference > docs/metrics.md"


def test_the_docs_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    if not Path(mkdocs).exists():
        pytest.skip("mkdocs not installed (dev extra)")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count("ValueGuard") > 3


@pytest.mark.slow
def test_the_readme_python_quick_starts_run_and_exit_cleanly(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 2, "the README has a Python and a LangChain quick start"
    script = tmp_path / "quick_start.py"
    script.write_text("\n".join(blocks))  # the second guard is never closed: it must still exit cleanly
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr and "vector:stimulation:+:L21:0.15" in done.stdout
