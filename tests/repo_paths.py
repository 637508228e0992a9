"""Where the repository and the tests' data files are, for tests at any depth of the tests tree."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
