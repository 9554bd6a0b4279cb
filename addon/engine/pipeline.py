"""Diffuse + normal -> PBR maps with the four ONNX models, in small steps a UI can drive.

Order (from the manifest's pipeline_order): UNet-Albedo over tiles of (diffuse, normal); the
classifier and the metallic SegFormer on the whole albedo, downsampled ("context"); UNet-Maps over
tiles of (albedo, normal, condition) where the condition is the context models' logits resampled
with wrap-around to each tile's pixels. Every tiled stage runs through tiling.TiledRun, so the
outputs tile seamlessly.

Arrays: float32 (H, W[, C]); colour in sRGB [0, 1]; normals as OpenGL unit vectors in [-1, 1].
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import context
from .errors import ConversionCancelled, PBRForgeError
from .manifest import ENGINE_IO, Manifest, fixed_batch, load_manifest
from .normalmaps import DETECTION_CROP, NORMAL_CONVENTIONS, decode_normal, detect_normal_convention, stores_no_z
from .priors import has_specular_mask, height_prior, specular_planes
from .sessions import DISPLAY_NAMES, PROVIDER_CHOICES, ModelSession, available_choices
from .tiling import TiledRun, plan_grid, resize_antialiased, resize_wrap, round_up, sample_wrap, wrap_source

# Tiles per session.run: batches keep a GPU busy; on the CPU one tile per call measured faster (its
# activations stay in cache: 2K set 4.8 s vs 5.8 s with 4 per call on 2 cores, benchmarks/bench_convert.py).
GPU_BATCH_TILES = 4
CPU_BATCH_TILES = 1
# Rows of the normal map decoded at a time.
_DECODE_ROWS = 256


@dataclass
class PBRResult:
    # albedo and normal stay in half precision (the outputs are 8-bit; an 8K set fits in 4 GB).
    albedo: np.ndarray             # (H, W, 3) float16 sRGB
    alpha: np.ndarray | None       # (H, W) from the diffuse, or None
    roughness: np.ndarray          # (H, W) linear
    metallic: np.ndarray
    ao: np.ndarray
    height: np.ndarray             # (H, W), 0.5 = mid level
    normal: np.ndarray             # (H, W, 3) float16 OpenGL unit vectors in [-1, 1]
    material_scores: dict          # class -> probability
    provider: str                  # e.g. "CPU", "CUDA"
    warnings: list = field(default_factory=list)
    seconds: float = 0.0


class Converter:
    """Loads the manifest once; creates each model's onnxruntime session on first use."""

    def __init__(self, models_dir=None, provider: str = "auto", tile: int | None = None,
                 overlap: int | None = None, batch_tiles: int | None = None):
        self.manifest: Manifest = load_manifest(models_dir)
        if provider not in PROVIDER_CHOICES:
            raise PBRForgeError(
                f"Unknown execution provider '{provider}'; choose one of {', '.join(PROVIDER_CHOICES)}."
            )
        multiple = self.manifest.unet_multiple
        tile = self.manifest.tile if tile is None else int(tile)
        if tile < multiple:
            raise PBRForgeError(f"The tile size {tile} is too small; use at least {multiple} pixels.")
        self.tile = round_up(tile, multiple)
        self.overlap = self.manifest.overlap if overlap is None else int(overlap)
        if not 0 <= self.overlap < self.tile // 2:
            raise PBRForgeError(
                f"The tile overlap {self.overlap} does not fit a {self.tile}-pixel tile; use 0 to "
                f"{self.tile // 2 - 1} pixels."
            )
        if batch_tiles is None:
            on_gpu = provider != "cpu" and available_choices()[0] != "cpu"
            batch_tiles = GPU_BATCH_TILES if on_gpu else CPU_BATCH_TILES
        self.batch_tiles = int(batch_tiles)
        if self.batch_tiles < 1:
            raise PBRForgeError("The number of tiles per batch must be at least 1.")
        self.provider = provider
        self.notes: list[str] = []  # provider fallbacks, shown with every result
        self._sessions: dict[str, ModelSession] = {}

    def session(self, name: str) -> ModelSession:
        if name not in self._sessions:
            entry = self.manifest.model(name)
            self._sessions[name] = ModelSession(
                entry.path, self.provider, self.notes,
                on_new_session=lambda session: self.manifest.check_session(name, session),
            )
        return self._sessions[name]

    @property
    def providers(self) -> list[str]:
        """The execution providers of the sessions created so far, each once, in model order."""
        return list(dict.fromkeys(s.provider for s in self._sessions.values()))

    def load_models(self) -> None:
        """Create every model's session now, so a model onnxruntime cannot load stops a run before
        its first texture (raises ModelRuntimeError or ManifestError) instead of failing each one."""
        for name in self.manifest.pipeline_order:
            self.session(name)

    def start(self, diffuse: np.ndarray, normal: np.ndarray | None = None,
              normal_convention: str = "directx") -> "ConversionJob":
        return ConversionJob(self, diffuse, normal, normal_convention)

    def convert(self, diffuse: np.ndarray, normal: np.ndarray | None = None,
                normal_convention: str = "directx") -> PBRResult:
        job = self.start(diffuse, normal, normal_convention)
        del diffuse, normal  # the job frees the inputs as soon as it is done with them
        while not job.done:
            job.step()
        return job.result


class ConversionJob:
    """One conversion as a sequence of short steps (one tile batch each) for Blender's modal timer."""

    def __init__(self, converter: Converter, diffuse, normal, normal_convention: str):
        self._input_warnings: list[str] = []
        diffuse = _check_image(diffuse, "diffuse", (1, 2, 3, 4), self._input_warnings)
        if normal is not None:
            normal = _check_image(normal, "normal", (3, 4), self._input_warnings)
        if normal_convention not in NORMAL_CONVENTIONS:
            raise PBRForgeError(
                f"Unknown normal convention '{normal_convention}'; choose one of {', '.join(NORMAL_CONVENTIONS)}."
            )
        self._converter = converter
        height, width = diffuse.shape[:2]
        self._grid = plan_grid(height, width, converter.tile, converter.overlap, converter.manifest.unet_multiple)
        batches = -(-self._grid.count // converter.batch_tiles)
        self._total_steps = 1 + batches + 1 + batches  # prepare, albedo tiles, context, maps tiles
        self._steps_done = 0
        self._seconds = 0.0
        self._result: PBRResult | None = None
        self._cancelled = False
        self._steps = self._run(diffuse, normal, normal_convention)

    @property
    def done(self) -> bool:
        return self._result is not None or self._cancelled

    @property
    def progress(self) -> float:
        return 1.0 if self._result is not None else self._steps_done / self._total_steps

    @property
    def result(self) -> PBRResult:
        if self._cancelled:
            raise ConversionCancelled("The conversion was cancelled; nothing was written.")
        if self._result is None:
            raise RuntimeError("the conversion has not finished; call step() until done")
        return self._result

    def step(self) -> float:
        """Do the next unit of work (one tile batch at most); returns progress in [0, 1]."""
        if self._cancelled:
            raise ConversionCancelled("The conversion was cancelled; nothing was written.")
        if self._result is not None:
            return 1.0
        started = time.perf_counter()
        try:
            next(self._steps)
        except StopIteration:
            pass
        except BaseException:
            self.cancel()  # a failed job frees its buffers like a cancelled one
            raise
        finally:
            self._seconds += time.perf_counter() - started
        self._steps_done += 1
        return self.progress

    def cancel(self) -> None:
        """Stop the job and free its buffers; `result` then raises ConversionCancelled."""
        if self._result is None:
            self._cancelled = True
            self._steps.close()

    def _run(self, diffuse, normal, normal_convention):
        """The conversion's stages; each `yield` ends one step() (one tile batch at most)."""
        warnings: list[str] = list(self._input_warnings)

        # Prepare. While the models run, the normal (and later the albedo) are kept in half
        # precision: ample for values in [-1, 1] fed to float32 tiles, and it keeps an 8K set within
        # the 4 GB memory budget.
        unit_normal, specular_mask = self._decode_normal_input(normal, normal_convention, warnings)
        normal = None  # the caller's array is no longer needed by the job
        prior = height_prior(unit_normal, self._converter.manifest.prior_max_side)[..., None]
        specular = _specular_source(specular_mask)
        alpha, colour = _split_diffuse(diffuse)
        yield

        albedo = yield from self._tiled_albedo(colour, unit_normal, specular)
        diffuse = colour = None  # freed before the half-precision copy is made
        albedo = np.clip(albedo, 0.0, 1.0, out=albedo).astype(np.float16)
        yield

        material_scores, condition = self._context(albedo)
        maps = yield from self._tiled_maps(albedo, unit_normal, condition, specular, prior)
        self._result = self._assemble(albedo, alpha, unit_normal, maps, material_scores, warnings)

    def _decode_normal_input(self, normal, normal_convention: str, warnings: list):
        """(the OpenGL unit normal as (H, W, 3) float16 -- also the result's normal, the specular mask
        as (H, W) float16 or None): the normal map resampled to the diffuse's size if it differs, its
        convention detected when "auto", decoded a block of rows at a time."""
        height, width = self._grid.height, self._grid.width
        unit_normal = np.zeros((height, width, 3), dtype=np.float16)
        if normal is None:
            warnings.append("No normal map was given; a flat normal was used, so height and AO carry less detail.")
            unit_normal[..., 2] = 1.0
            return unit_normal, None
        if normal.shape[:2] != (height, width):
            warnings.append(
                f"The normal map is {normal.shape[1]}x{normal.shape[0]} but the diffuse is "
                f"{width}x{height}; the normal was resampled to match."
            )
            normal = resize_wrap(normal, height, width)
        specular_mask = None
        if normal.shape[2] == 4 and has_specular_mask(normal[..., 3]):  # the old specular mask (`_n` alpha)
            specular_mask = normal[..., 3].astype(np.float16)
        if normal_convention == "auto":
            crop = normal[:DETECTION_CROP, :DETECTION_CROP]
            normal_convention = detect_normal_convention(decode_normal(crop, "opengl", []), warnings)
        rebuild_z = stores_no_z(normal[..., 2])  # decided once for the whole map
        for top in range(0, height, _DECODE_ROWS):  # in row blocks: no full-size temporaries
            rows = slice(top, top + _DECODE_ROWS)
            unit_normal[rows] = decode_normal(normal[rows], normal_convention, warnings, rebuild_z)
        return unit_normal, specular_mask

    def _tiled_albedo(self, colour, unit_normal, specular):
        """Stage (a), one tile batch per step: UNet-Albedo over tiles of (diffuse, normal, specular);
        returns the (H, W, 3) float32 albedo, not yet clipped."""
        converter, grid = self._converter, self._grid
        albedo = np.empty((grid.height, grid.width, 3), dtype=np.float32)
        run = TiledRun(grid, [wrap_source(colour), wrap_source(unit_normal), specular], self._model("albedo"),
                       albedo, converter.batch_tiles)
        while not run.step():
            yield
        return albedo

    def _context(self, albedo):
        """Stage (b), the context models on the whole albedo: (material_scores as class ->
        probability, the TileSource of UNet-Maps' condition)."""
        converter, manifest = self._converter, self._converter.manifest
        height, width = self._grid.height, self._grid.width
        classifier = converter.session("classifier")
        class_size = _fixed_hw(manifest.model("classifier").inputs["image"]["shape"],
                               manifest.context_max_side["classifier"])
        image = albedo.transpose(2, 0, 1)[None]  # (1, 3, H, W), a view
        outputs = classifier.run({"image": _resize_nchw(image, *class_size)})
        logits = outputs["logits"][0]
        patch_logits = outputs["patch_logits"][0].transpose(1, 2, 0)  # (rows, cols, classes)
        scores = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        material_scores = {name: float(p) for name, p in zip(manifest.material_classes, scores)}
        segmenter = converter.session("metallic_seg")
        # The albedo is half precision here; the segmenter's (small) padded input goes in as float32.
        metallic_logit = context.segment(lambda x: segmenter.run({"image": x.astype(np.float32)})["metallic_logits"],
                                         image, manifest.context_max_side["metallic_seg"], manifest.unet_multiple,
                                         _resize_nchw)[0].transpose(1, 2, 0)
        return material_scores, _condition_source(manifest, patch_logits, metallic_logit, height, width)

    def _tiled_maps(self, albedo, unit_normal, condition, specular, prior):
        """Stage (c), one tile batch per step: UNet-Maps over tiles of (albedo, normal, condition,
        specular, height prior); returns the (H, W, len(map_channels)) float32 maps in [0, 1]."""
        converter, grid = self._converter, self._grid
        maps = np.empty((grid.height, grid.width, len(converter.manifest.map_channels)), dtype=np.float32)
        run = TiledRun(grid, [wrap_source(albedo), wrap_source(unit_normal), condition, specular,
                              _wrap_resampled(prior, grid.height, grid.width)], self._model("maps"), maps,
                       converter.batch_tiles)
        while not run.step():
            yield
        return np.clip(maps, 0.0, 1.0, out=maps)

    def _assemble(self, albedo, alpha, unit_normal, maps, material_scores: dict, warnings: list) -> PBRResult:
        converter = self._converter
        channel = {name: maps[..., i] for i, name in enumerate(converter.manifest.map_channels)}
        return PBRResult(
            albedo=albedo, alpha=alpha, normal=unit_normal,
            roughness=channel["roughness"], metallic=channel["metallic"], ao=channel["ao"],
            height=channel["height"], material_scores=material_scores,
            provider=", ".join(DISPLAY_NAMES[p] for p in converter.providers),
            warnings=warnings + [note for note in converter.notes if note not in warnings],
            seconds=self._seconds,
        )

    def _model(self, name: str):
        """A tiling model callable: list of NCHW tile batches (in manifest.ENGINE_IO's input order) ->
        NCHW output batch."""
        input_names, (output_name,) = ENGINE_IO[name]
        session = self._converter.session(name)
        batch_size = fixed_batch(session.session)

        def run(inputs):
            feeds = dict(zip(input_names, inputs))
            if batch_size is None:
                return session.run(feeds)[output_name]
            return _run_in_fixed_batches(session, feeds, output_name, batch_size)

        return run


def _run_in_fixed_batches(session, feeds: dict, output_name: str, size: int) -> np.ndarray:
    """For graphs exported with a fixed batch: pad the last batch by repeating its last tile."""
    count = next(iter(feeds.values())).shape[0]
    outputs = []
    for start in range(0, count, size):
        chunk = {}
        for name, value in feeds.items():
            part = value[start:start + size]
            if part.shape[0] < size:
                part = np.concatenate([part, np.repeat(part[-1:], size - part.shape[0], axis=0)])
            chunk[name] = part
        outputs.append(session.run(chunk)[output_name][:min(size, count - start)])
    return np.concatenate(outputs)


def _check_image(array, what: str, channels: tuple, warnings: list) -> np.ndarray:
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{what} must be a float array in [0, 1], got {array.dtype}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in channels or min(array.shape[:2]) < 1:
        raise PBRForgeError(
            f"The {what} image has shape {array.shape}, which PBR Forge cannot use; give an image with "
            f"{' or '.join(map(str, channels))} channels."
        )
    return _finite(array, what, warnings)


def _finite(array: np.ndarray, what: str, warnings: list) -> np.ndarray:
    """The image with NaN set to 0 and infinities clipped to [0, 1] (a copy, only when needed).

    One NaN pixel would otherwise spread through the whole-image context models and zero every map.
    Checked a block of rows at a time: no full-size temporary for an 8K image.
    """
    bad_rows = [start for start in range(0, array.shape[0], _DECODE_ROWS)
                if not np.isfinite(array[start:start + _DECODE_ROWS]).all()]
    if not bad_rows:
        return array
    repaired = array.copy()
    count = 0
    for start in bad_rows:
        block = repaired[start:start + _DECODE_ROWS]
        count += int((~np.isfinite(block)).any(axis=2).sum())
        np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    warnings.append(f"The {what} image has {count} pixel(s) that are not numbers (NaN or infinite); "
                    "they were set to 0 or 1. Re-export it if that looks wrong.")
    return repaired


def _split_diffuse(diffuse: np.ndarray) -> tuple:
    """(alpha as (H, W) float32 or None, colour as (H, W, 3)): grey diffuses repeat their grey."""
    alpha = np.array(diffuse[..., -1], dtype=np.float32) if diffuse.shape[2] in (2, 4) else None
    colour = diffuse[..., :3] if diffuse.shape[2] >= 3 else np.repeat(diffuse[..., :1], 3, axis=2)
    return alpha, colour


def _fixed_hw(shape: list, fallback: int) -> tuple:
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return height, width
    return fallback, fallback


def _resize_nchw(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1, C, H, W) -> (1, C, height, width), antialiased (context.Resize for the engine)."""
    return resize_antialiased(image[0].transpose(1, 2, 0), height, width).transpose(2, 0, 1)[None]


def _specular_source(mask: np.ndarray | None):
    """TileSource of the specular input, cut from the mask plane (the whole texture decided once
    whether it has one; priors.specular_planes lays the channels out)."""
    cut_mask = None if mask is None else wrap_source(mask)

    def cut(y0: int, x0: int, tile_h: int, tile_w: int) -> np.ndarray:
        tile = None if cut_mask is None else cut_mask(y0, x0, tile_h, tile_w)[..., 0]
        return specular_planes(tile, tile_h, tile_w)

    return cut


def _wrap_resampled(small: np.ndarray, height: int, width: int):
    """TileSource of a (h, w, C) map covering the whole texture, resampled to each tile's pixels."""
    if small.shape[:2] == (height, width):
        return wrap_source(small)
    return lambda y0, x0, tile_h, tile_w: sample_wrap(small, height, width, y0, x0, tile_h, tile_w)


def _condition_source(manifest: Manifest, patch_logits, metallic_logit, height: int, width: int):
    """TileSource for UNet-Maps' condition: each context logit resampled (bilinear, wrap-around)
    to the tile's pixels, in the manifest's condition channel order."""
    order = []
    for name in manifest.condition_channels:
        if name.startswith("material:"):
            order.append(manifest.material_classes.index(name.split(":", 1)[1]))
        else:
            order.append(len(manifest.material_classes))  # the metallic logit comes last
    order = np.asarray(order)

    def cut(y0: int, x0: int, tile_h: int, tile_w: int) -> np.ndarray:
        materials = sample_wrap(patch_logits, height, width, y0, x0, tile_h, tile_w)
        metal = sample_wrap(metallic_logit, height, width, y0, x0, tile_h, tile_w)
        return np.concatenate([materials, metal], axis=2)[..., order]

    return cut
