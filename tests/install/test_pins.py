"""Version pins are written once, in pyproject.toml; setup_env.sh and the clean-Blender fixtures take them from there."""
import importlib.util
import re
import subprocess
import sys
import tomllib

from .conftest import CLEAN_BLENDERS, REPO


def _pins_script():
    spec = importlib.util.spec_from_file_location("pbr_forge_pins", REPO / "scripts" / "pins.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pins_prints_the_requirements_pyproject_lists():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "pins.py"), "torch", "Pillow", "bpy"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        next(r for r in project["optional-dependencies"]["train"] if r.startswith("torch=")),
        next(r for r in project["dependencies"] if r.startswith("Pillow")),
        project["optional-dependencies"]["blender"][0],
    ]
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "pins.py"), "no-such-package"],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "no-such-package" in missing.stderr


def test_setup_env_writes_no_version_of_its_own():
    script = (REPO / "scripts" / "setup_env.sh").read_text()
    assert not re.search(r"[A-Za-z0-9]\s*(==|>=|<=|~=)\s*\d", script), "a pin in setup_env.sh: put it in pyproject.toml"
    assert "scripts/pins.py torch torchvision" in script


def test_the_clean_blender_fixture_includes_the_projects_bpy():
    bpy_pin = _pins_script().requirements()["bpy"]
    version = bpy_pin.split("==")[1]
    assert CLEAN_BLENDERS[version][0] == bpy_pin
