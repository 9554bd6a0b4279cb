"""Per-scene settings of a run, the progress of the run going on, and the summary of the last one."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, IntProperty, PointerProperty, StringProperty


class PBRForgeSceneSettings(bpy.types.PropertyGroup):
    # Image pair (convert two files without a material).
    diffuse_path: StringProperty(name="Diffuse", subtype='FILE_PATH', description="Diffuse texture file")
    normal_path: StringProperty(name="Normal", subtype='FILE_PATH', description="Normal map file (optional)")
    # Batch.
    batch_input_dir: StringProperty(name="Mod Folder", subtype='DIR_PATH',
                                    description="Folder with the mod's textures (read only)")
    batch_output_dir: StringProperty(name="Output Folder", subtype='DIR_PATH',
                                     description="Folder the converted set is written to")
    # Material conversions.
    pack_images: BoolProperty(name="Pack Images", default=False,
                              description="Embed the converted maps in the .blend file")

    # The run going on (the panel draws a progress bar while `running` is set).
    running: StringProperty(name="Running")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype='FACTOR')

    # Last run (read-only in the UI).
    last_message: StringProperty(name="Result")
    last_count: IntProperty(name="Items Made")
    last_unit: StringProperty(name="Unit", description="What last_count counts: maps or texture sets")
    last_seconds: FloatProperty(name="Seconds")
    last_provider: StringProperty(name="Provider")
    last_warnings: StringProperty(name="Warnings")


class PBRForgeCheck(bpy.types.PropertyGroup):
    """The validation of a converted material (docs/validation.md), shown in the panel."""
    verdict: StringProperty(name="Verdict", description="pass, warn or fail; empty when not checked")
    score: FloatProperty(name="Score", min=-1.0, max=1.0,
                         description="BRDF cosine of the new material against the original as the old game shaded it")
    reasons: StringProperty(name="Reasons")
    # Cycles renders made on request (addon/blender/preview.py): the new material and its source.
    preview: PointerProperty(type=bpy.types.Image, name="Preview")
    source_preview: PointerProperty(type=bpy.types.Image, name="Original Preview")


# Module functions, not methods: bpy 4.2 crashes at exit after uninstalling an extension whose
# PropertyGroup has Python methods (SpaceType destructor -> bpy_class_free after Python is gone).
def record_last_run(settings: PBRForgeSceneSettings, summary) -> None:
    """Store a driver.RunSummary for the panel."""
    settings.last_message = summary.message
    settings.last_count = summary.count
    settings.last_unit = summary.unit
    settings.last_seconds = summary.seconds
    settings.last_provider = summary.provider
    settings.last_warnings = " | ".join(dict.fromkeys(summary.warnings + summary.failures))  # keep order, no repeats


def record_check(material, checked) -> None:
    """Store a validation.Validation (or None: not scored) on the converted material."""
    check = material.pbr_forge_check
    check.verdict = checked.verdict if checked else ""
    check.score = checked.score if checked else 0.0
    check.reasons = " | ".join(checked.reasons) if checked else ""


def register():
    bpy.utils.register_class(PBRForgeSceneSettings)
    bpy.utils.register_class(PBRForgeCheck)
    bpy.types.Scene.pbr_forge = PointerProperty(type=PBRForgeSceneSettings)
    # The material a converted material was made from: what "Revert" puts back.
    bpy.types.Material.pbr_forge_source = PointerProperty(
        type=bpy.types.Material, name="PBR Forge Source",
        description="The material this PBR material was converted from",
    )
    bpy.types.Material.pbr_forge_check = PointerProperty(type=PBRForgeCheck, name="PBR Forge Check")


def unregister():
    del bpy.types.Material.pbr_forge_check
    del bpy.types.Material.pbr_forge_source
    del bpy.types.Scene.pbr_forge
    bpy.utils.unregister_class(PBRForgeCheck)
    bpy.utils.unregister_class(PBRForgeSceneSettings)
