"""Print pyproject.toml's requirement for each distribution named, one a line.

    python scripts/pins.py torch torchvision      ->  torch==2.14.1
                                                      torchvision==0.29.1

Every version pin lives in pyproject.toml ([project] dependencies and the optional groups); build.py
reads it there too, and setup_env.sh asks this script for the pins it installs first. Standard
library only: it runs before anything is installed.
"""
from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name (Pillow == pillow)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """Normalised distribution name -> its requirement, over the dependencies and every optional group."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    groups = [project.get("dependencies", []), *project.get("optional-dependencies", {}).values()]
    return {canonical_name(re.match(r"[A-Za-z0-9_.\-]+", requirement).group()): requirement
            for group in groups for requirement in group}


def main(names: list[str]) -> int:
    found = requirements()
    missing = [name for name in names if canonical_name(name) not in found]
    if missing:
        print(f"pyproject.toml has no requirement for {', '.join(missing)}", file=sys.stderr)
        return 1
    print("\n".join(found[canonical_name(name)] for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
