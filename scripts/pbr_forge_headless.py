"""Run the PBR Forge command line inside Blender:

    blender -b --factory-startup --python-exit-code 1 --python scripts/pbr_forge_headless.py -- convert --input ... --output ...

Everything after `--` goes to `addon.cli` (see docs/cli.md); Blender exits with the CLI's code.
Inside Blender, bpy is importable, so `convert` also writes the .blend with one material per set.
"""
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cli_arguments(argv: list[str]) -> list[str]:
    return argv[argv.index("--") + 1:] if "--" in argv else []


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    from addon.cli import run_and_exit

    run_and_exit(cli_arguments(sys.argv))
