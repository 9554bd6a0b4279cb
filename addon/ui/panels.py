"""The "PBR" sidebar tab, in the 3D Viewport and in the Shader Editor."""
from __future__ import annotations

import bpy

from ..blender.detect import detect_inputs


class _PBRForgePanel:
    bl_region_type = 'UI'
    bl_category = "PBR"
    bl_label = "PBR Forge"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.pbr_forge
        if settings.running:
            layout.progress(factor=settings.progress, type='BAR',
                            text=f"{settings.running}: {settings.progress:.0%} (Esc cancels)")
        material = context.object.active_material if context.object else None

        box = layout.box()
        if material is None:
            box.label(text="Select an object with a material", icon='INFO')
        else:
            box.label(text=material.name, icon='MATERIAL')
            found = detect_inputs(material)
            box.label(text=f"Diffuse: {found.diffuse.name if found.diffuse else 'not found'}",
                      icon='CHECKMARK' if found.diffuse else 'ERROR')
            normal_text = f"{found.normal.name} ({found.normal_convention})" if found.normal else "none"
            box.label(text=f"Normal: {normal_text}", icon='CHECKMARK' if found.normal else 'DOT')
            for finding in found.how:  # why these images: the node link or the file name
                box.label(text=finding, icon='BLANK1')
        if material is not None and material.pbr_forge_check.verdict:
            _draw_check(layout, material.pbr_forge_check)
        layout.prop(settings, "pack_images")
        layout.operator("pbr_forge.convert_material", icon='SHADING_TEXTURE')
        layout.operator("pbr_forge.convert_selected")
        if material is not None and material.pbr_forge_source is not None:
            layout.operator("pbr_forge.revert_material", icon='LOOP_BACK')

        pair = layout.box()
        pair.label(text="Image Pair")
        pair.prop(settings, "diffuse_path")
        pair.prop(settings, "normal_path")
        row = pair.row()
        row.enabled = bool(settings.diffuse_path)
        row.operator("pbr_forge.convert_pair")

        batch = layout.box()
        batch.label(text="Mod Folder")
        batch.prop(settings, "batch_input_dir")
        batch.prop(settings, "batch_output_dir")
        batch.operator("pbr_forge.batch_convert", icon='FILE_FOLDER')

        if settings.last_message:
            summary = layout.box()
            summary.label(text="Last Run")
            summary.label(text=settings.last_message)
            summary.label(text=f"{settings.last_count} {settings.last_unit}, {settings.last_seconds:.1f} s, "
                               f"{settings.last_provider}")
            for warning in filter(None, settings.last_warnings.split(" | ")):
                summary.label(text=warning, icon='ERROR')


CHECK_ICONS = {"pass": 'CHECKMARK', "warn": 'ERROR', "fail": 'CANCEL'}


def _draw_check(layout, check) -> None:
    """The material's validation: score with a pass/warn/fail mark, then what to look at."""
    box = layout.box()
    box.label(text=f"Check: {check.verdict.upper()}, score {check.score:.3f}",
              icon=CHECK_ICONS.get(check.verdict, 'QUESTION'))
    for reason in filter(None, check.reasons.split(" | ")):
        box.label(text=reason)
    if check.preview and check.source_preview:
        row = box.row()
        for title, image in (("Original", check.source_preview), ("Converted", check.preview)):
            column = row.column()
            column.label(text=title)
            column.template_icon(icon_value=image.preview_ensure().icon_id, scale=5.0)
    box.operator("pbr_forge.render_preview", icon='RENDER_STILL')


class PBR_FORGE_PT_main(_PBRForgePanel, bpy.types.Panel):
    bl_space_type = 'VIEW_3D'


class PBR_FORGE_PT_main_shader(_PBRForgePanel, bpy.types.Panel):
    bl_space_type = 'NODE_EDITOR'

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == 'ShaderNodeTree'


classes = (PBR_FORGE_PT_main, PBR_FORGE_PT_main_shader)
