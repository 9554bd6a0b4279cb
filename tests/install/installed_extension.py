"""Run inside a clean bpy environment (a venv holding only bpy): what a user does with the zip.

    python installed_extension.py ZIP DIFFUSE NORMAL WORK_DIR

Installs the zip from disk and enables it, converts one diffuse/normal pair through the installed
extension's operator, disables and uninstalls it, and prints one JSON line (prefixed RESULT) with what
it saw. BLENDER_USER_RESOURCES must point into WORK_DIR so the user's own Blender is never touched.
"""
import gc
import importlib.util
import json
import os
import sys
from pathlib import Path

# What the engine needs and Blender does not ship: all of it must come from the zip's wheels.
BUNDLED_MODULES = ("onnxruntime", "PIL", "etcpak", "archspec", "texture2ddecoder")
PACKAGE_ID = "pbr_forge"
MODULE = f"bl_ext.user_default.{PACKAGE_ID}"


def live_model_sessions() -> int:
    """onnxruntime sessions still alive (each holds a model's weights and arena)."""
    gc.collect()
    onnxruntime = sys.modules.get("onnxruntime")
    return sum(isinstance(o, onnxruntime.InferenceSession) for o in gc.get_objects()) if onnxruntime else 0


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def main(zip_path: str, diffuse: str, normal: str, work_dir: str) -> dict:
    work = Path(work_dir)
    result = {"importable_before": [m for m in BUNDLED_MODULES + ("addon",) if importlib.util.find_spec(m)]}
    import bpy

    result["blender"] = bpy.app.version_string
    extensions = Path(bpy.utils.user_resource('EXTENSIONS'))
    result["extensions_in_work_dir"] = extensions.is_relative_to(work)
    repos = bpy.context.preferences.extensions.repos
    repo_index = next(i for i, repo in enumerate(repos) if repo.module == "user_default")

    result["install"] = sorted(bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True))
    result["enabled"] = MODULE in bpy.context.preferences.addons
    result["importable_after_install"] = [m for m in BUNDLED_MODULES if importlib.util.find_spec(m)]

    prefs = bpy.context.preferences.addons[MODULE].preferences
    out = work / "out"
    prefs.output_dir = str(out)
    prefs.provider = 'CPU'
    result["convert"] = sorted(bpy.ops.pbr_forge.convert_pair(diffuse_path=diffuse, normal_path=normal))
    result["outputs"] = files_under(out)
    material = next((m for m in bpy.data.materials if m.name.endswith("_PBR")), None)
    result["material"] = material.name if material else None
    result["image_nodes"] = sorted(n.label for n in material.node_tree.nodes if n.type == 'TEX_IMAGE') if material else []
    result["last_run"] = bpy.context.scene.pbr_forge.last_message

    # The headless recipe of docs/install.md: the installed extension's command line, in the same Blender.
    cli = importlib.import_module(f"{MODULE}.cli")
    result["cli_exit"] = cli.main(["convert", "--input", diffuse, "--output", str(work / "cli_out")])
    result["cli_outputs"] = files_under(work / "cli_out")
    result["enabled_after_cli"] = MODULE in bpy.context.preferences.addons

    result["sessions_enabled"] = live_model_sessions()
    bpy.ops.preferences.addon_disable(module=MODULE)
    result["sessions_disabled"] = live_model_sessions()
    result["enabled_after_disable"] = MODULE in bpy.context.preferences.addons
    result["uninstall"] = sorted(bpy.ops.extensions.package_uninstall(repo_index=repo_index, pkg_id=PACKAGE_ID))
    result["operators_left"] = hasattr(bpy.types, "PBR_FORGE_OT_convert_pair")
    # Blender keeps its own bookkeeping (e.g. the repo's index.json); nothing of ours may stay behind.
    result["extension_files_left"] = [f for f in files_under(extensions) if PACKAGE_ID in f
                                      or any(m.lower() in f.lower() for m in BUNDLED_MODULES)]
    result["outputs_after_uninstall"] = files_under(out)
    return result


if __name__ == "__main__":
    if not os.environ.get("BLENDER_USER_RESOURCES"):
        sys.exit("set BLENDER_USER_RESOURCES to a scratch folder first")
    print("RESULT " + json.dumps(main(*sys.argv[1:5])), flush=True)
