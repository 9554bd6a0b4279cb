"""Regenerate examples/: procedural Skyrim-style texture pairs (our own art, no game files).

Each set is a vanilla-style BC1 diffuse `<name>.dds` with baked light and AO, and a BC3 DirectX
normal map `<name>_n.dds` with the old specular mask in alpha — what the add-on meets in a real mod.
    python scripts/make_examples.py
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.data.synth import generate_material, old_specular_mask, render_old_diffuse, write_skyrim_pair  # noqa: E402

EXAMPLES = {"metal": 101, "wood": 202, "stone": 303, "fabric": 404}
SIZE = 512


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "examples"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as targets:  # the ground truth is not shipped, only the inputs
        for category, seed in EXAMPLES.items():
            material = generate_material(seed, SIZE, category)
            material.name = f"{category}_example"
            material.diffuse = render_old_diffuse(material, np.random.default_rng(seed), bc1=False)
            material.specular = old_specular_mask(material)
            print(write_skyrim_pair(material, out, targets))


if __name__ == "__main__":
    main()
