"""Convert a whole mod folder: discovery, a resumable run journal, and a kill-safe batch job.

A set is one diffuse texture with its `_n` normal (or a flat normal when it has none). The job
converts one set per `step()`, so the Blender operator can drive it from a timer and the CLI
from a loop (`run_batch`).

Safety rules, in the order they matter to a modder:
- Originals are only ever opened for reading, and the output folder may not overlap the input
  folder (unless explicitly allowed).
- The output folder holds only what a mod manager should install (`textures/`, `PBRNifPatcher/`;
  `blender/` for the PNG sets). The run's own files (journal, lock, summary) live beside it, in
  `<output>.pbr_forge/` (see `run_files_dir`).
- Every output file appears atomically (temporary file, then rename); a run journal
  (`journal.jsonl` in the run-files folder) gets one fsync'ed line per finished set with
  the sha256 of its inputs and of the models manifest. A re-run skips the sets whose inputs, models
  and outputs are unchanged, so a killed run loses only the sets in flight (the one being inferred
  and the one being encoded).
- One bad file never stops the batch: its set is recorded as failed with a one-sentence reason.
- What the True PBR output cannot carry is said, not silently produced: landscape and skin sets
  are left out with a reason, model-space-normal (`_msn`) sets are left out or keep their normal
  (`model_space_normals`), odd sizes are resampled to whole 4x4 blocks with a note, and names some
  tools mishandle are warned about.

Throughput: inference runs on the calling thread (onnxruntime releases the GIL while it computes)
while a small thread pool reads and hashes the next set and block-compresses the previous one.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


from . import dds, naming, truepbr, validation
from .contactsheet import SheetEntry, thumbnail, write_contact_sheet
from .errors import OutputExists, OutputFolderBusy, PBRForgeError, user_sentence
from .imageio import TEMPORARY_SUFFIX, decode_image, read_file_bytes, write_atomically
from .manifest import MANIFEST_NAME, sha256_of
from .normalmaps import NORMAL_CONVENTIONS, input_convention
from .tiling import resize_wrap

FORMATS = ("truepbr", "blender", "both")
# What to do with a set whose mesh uses a model-space normal (`_msn`): leave it out (the game keeps
# the original), or convert it with "lock_normal" (the mesh keeps its `_msn`, no `_n` is written).
MODEL_SPACE_NORMAL_CHOICES = ("skip", "keep")
RUN_FILES_SUFFIX = ".pbr_forge"  # <output>.pbr_forge/ beside the output folder
JOURNAL_NAME = "journal.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".pbr_forge.lock"
# Where earlier versions kept a batch's journal and summary: inside the output folder, so a mod manager
# installed them with the mod. A run removes them (the journal could not resume anyway: its records
# predate TRUEPBR_RULES_VERSION).
_LEGACY_RUN_FILES = (".pbr_forge_journal.jsonl", "pbr_forge_summary.json")
# Folder names that say nothing about the mod: the patcher JSON is named after the folder above.
_GENERIC_FOLDERS = ("textures", "data")
# Bumped when the True PBR files or entries written for the same inputs change: a re-run rewrites
# the sets an older version wrote instead of keeping them as done.
TRUEPBR_RULES_VERSION = 2
BLENDER_FOLDER = "blender"  # the PNG sets go to OUTDIR/blender/<folders under textures>/
# Extension preference when two files differ only by extension (iron.dds and iron.png).
_EXTENSION_RANK = {ext: rank for rank, ext in enumerate(naming.TEXTURE_EXTENSIONS)}


@dataclass(frozen=True)
class TextureSet:
    diffuse: Path
    normal: Path | None
    relative_stem: str  # the diffuse path under the textures folder, forward slashes, no extension
    display: str        # the diffuse path relative to the input folder, for messages
    glow: Path | None = None               # the `_g` beside the diffuse
    model_space_normal: Path | None = None  # the `_msn` beside the diffuse
    skin: bool = False  # a skin set: a `_sk` tint beside it, or an actor texture with a `_s`

    @property
    def key(self) -> str:
        """Journal key: game paths are case-insensitive, so is the key."""
        return self.relative_stem.lower()


# --- discovery ---------------------------------------------------------------------------------

def textures_roots(input_dir: Path) -> list[Path]:
    """The folders that play the role of Data/textures: the `textures` children (any case; on a
    case-sensitive disk there may be several), the input folder itself when it is named textures,
    else the input folder (a plain folder of images)."""
    if input_dir.name.lower() == "textures":
        return [input_dir]
    found = [c for c in sorted(input_dir.iterdir()) if c.is_dir() and c.name.lower() == "textures"]
    return found or [input_dir]


def discover(input_dir: str | os.PathLike, exclude=None, recursive: bool = True
             ) -> tuple[list[TextureSet], list[dict]]:
    """The conversion sets of a mod folder, and the texture files left out with the reason
    (normal, `_msn` and `_g` maps used by a set are not listed). The one rule for which files are
    diffuses, shared by `batch` and `convert` (which passes recursive=False: only the folder's own files).

    Left out: non-diffuse suffixes (_n, _g, _p, ...), Node Wrangler non-colour maps, pipes, devices
    and broken links (reading a pipe would block), anything under textures/pbr/ (True PBR files
    already) and under `exclude` (a folder or several: the output folder when allowed inside).
    """
    input_dir = Path(input_dir)
    if exclude is None or isinstance(exclude, (str, os.PathLike)):
        exclude = () if exclude is None else (exclude,)
    excluded = {Path(folder).resolve() for folder in exclude}
    ignored: list[tuple[Path, dict]] = []
    chosen: dict[str, TextureSet] = {}

    # Not naming.diffuses_under (the trainer's data folders): a mod also has textures/ roots, textures/pbr/
    # outputs, vendor sets, same-name files in several formats and folders to exclude.
    roots = textures_roots(input_dir) if recursive else [input_dir]
    walks = ((root, entry) for root in roots for entry in os.walk(root))
    for root, (folder, subfolders, files) in walks:
        folder = Path(folder)
        listing = {name.lower(): folder / name for name in files}
        subfolders[:] = sorted(
            name for name in subfolders
            if recursive and not (folder == root and name.lower() == naming.TRUEPBR_FOLDER)
            and (folder / name).resolve() not in excluded
        )
        for name in sorted(files):
            path = folder / name
            if not naming.is_texture_file(path):
                continue
            display = path.relative_to(input_dir).as_posix()
            relative = path.relative_to(root)
            reason = _left_out_reason(path)
            if reason is not None:
                ignored.append((path, {"texture": display, "reason": reason}))
                continue
            item = _texture_set(path, relative.with_suffix("").as_posix(), display, listing)
            previous = chosen.get(item.key)
            if previous is not None:
                keep, drop = sorted((previous, item), key=lambda s: _EXTENSION_RANK[s.diffuse.suffix.lower()])
                ignored.append((drop.diffuse, {"texture": drop.display,
                                               "reason": f"same name as {keep.display}, which was used"}))
                item = keep
            chosen[item.key] = item
    used = {p for s in chosen.values() for p in (s.normal, s.glow, s.model_space_normal) if p is not None}
    ignored = [entry for path, entry in ignored if path not in used]
    return sorted(chosen.values(), key=lambda s: s.key), ignored


def _texture_set(diffuse: Path, relative_stem: str, display: str, listing: dict[str, Path]) -> TextureSet:
    """The set of a diffuse and the files beside it that shape its output (listing: its folder's files)."""
    def beside(suffix: str) -> Path | None:
        return naming.find_sibling(diffuse, suffix, listing)

    actor = naming.top_folder(relative_stem) == naming.ACTORS_FOLDER
    skin = beside("_sk") is not None or (actor and beside("_s") is not None)
    return TextureSet(diffuse, naming.find_normal_for(diffuse), relative_stem, display,
                      glow=beside("_g"), model_space_normal=beside("_msn"), skin=skin)


def truepbr_exclusion(item: TextureSet, model_space_normals: str) -> tuple[str, str] | None:
    """(summary list, reason) for a set that gets no True PBR output; None when it gets one."""
    if naming.top_folder(item.relative_stem) == naming.LANDSCAPE_FOLDER:
        return "landscape", ("landscape texture: the patchers cannot apply it (landscape PBR needs "
                             "PBRTextureSets JSON and texture-set records), skipped")
    if item.skin:
        return "skin", ("skin texture (a _sk tint, or an actor's _s): without subsurface settings the patchers "
                        "would reset its skin shader, skipped")
    if item.model_space_normal is not None and model_space_normals == "skip":
        return "model_space_normal", ("model-space normal (_msn) set: a tangent _n would light it wrongly, "
                                      "skipped (--model-space-normals keep converts it and keeps its _msn)")
    return None


def name_warnings(item: TextureSet) -> list[str]:
    """Names the patchers or other tools mishandle: converted, but the user is told."""
    notes = []
    if not item.relative_stem.isascii():
        notes.append("the path has non-ASCII characters, and PGPatcher skips such textures; for PGPatcher, rename "
                     "the texture and its NIF references to plain ASCII.")
    if "." in PurePosixPath(item.relative_stem).name:
        notes.append("the name has a dot before its extension, which some modding tools take for the extension; "
                     "if a patcher misses this texture, rename it (and its NIF references) without the dot.")
    return notes


def bsa_archives(input_dir: Path) -> list[str]:
    """The BSA archives of a mod folder (their textures are not loose files the batch can read); for
    an input that is the mod's `textures` folder, those of the mod folder above it."""
    folders = [input_dir] + ([input_dir.parent] if input_dir.name.lower() == "textures" else [])
    found = []
    for folder in folders:
        try:
            found += [p.name for p in folder.iterdir() if p.suffix.lower() == ".bsa" and p.is_file()]
        except OSError:
            continue
    return sorted(found)


def _left_out_reason(path: Path) -> str | None:
    """Why a texture file is not converted as a diffuse; None when it is one."""
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError:
        regular = False
    if not regular:
        return "not a regular file (a pipe, device or broken link), skipped"
    role = naming.role_of(path)
    if role != "diffuse":
        return f"{role.replace('_', ' ')} map, not a diffuse"
    if naming.is_node_wrangler_map(path):
        return f"{naming.tag_role(path.stem)} map of a Node Wrangler set"
    return None


def check_output_folder(input_dir: Path, output_dir: Path, allow_output_inside_input: bool,
                        walks_subfolders: bool = True) -> None:
    """The one rule for where a run may write, for `batch` and (walks_subfolders False: it reads only
    the folder's own files) `convert`: never into a file; not the input folder or a folder inside it
    unless allowed; and for a run that walks subfolders never the input folder itself (it skips an
    output folder inside its walk, not the folder it walks) nor a folder that holds the input (its
    mirrored tree would interleave with the originals)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise PBRForgeError(f"The output '{output_dir}' is a file, not a folder; choose a folder.")
    source, target = input_dir.resolve(), output_dir.resolve()
    never_allowed = walks_subfolders and source == target
    if (source == target or source in target.parents) and (never_allowed or not allow_output_inside_input):
        raise PBRForgeError(
            f"The output folder '{output_dir}' is the input folder or inside it; choose a separate folder so "
            "the originals stay untouched" + ("." if never_allowed else " (or pass --allow-output-inside-input)."))
    if walks_subfolders and target in source.parents:
        raise PBRForgeError(
            f"The input folder '{input_dir}' is inside the output folder; choose a separate output folder "
            "so the originals stay untouched.")


# --- the run's own files -----------------------------------------------------------------------

def run_files_dir(output_dir: str | os.PathLike) -> Path:
    """Where a batch into output_dir keeps its journal, lock and summary: `<output>.pbr_forge/`
    beside the output folder, so what a mod manager installs from the output holds only the mod."""
    output = Path(os.path.abspath(output_dir))
    return output.with_name(output.name + RUN_FILES_SUFFIX)


def default_summary_path(output_dir: str | os.PathLike) -> Path:
    return run_files_dir(output_dir) / SUMMARY_NAME


def refuse_link(path: Path) -> None:
    """PBRForgeError when one of the run's own files or folders is a symbolic link (it could point into the mod)."""
    if path.is_symlink():
        raise PBRForgeError(f"'{path}' is a symbolic link; PBR Forge does not write through links. "
                            "Delete the link and run again.")


def open_own_file(path: Path, flags: int) -> int:
    """os.open for the run's own files (journal, lock): never through a symbolic link, which could
    point into the mod, and never a pipe or device. Returns the descriptor."""
    refuse_link(path)
    extra = 0
    for name in ("O_NOFOLLOW", "O_NONBLOCK", "O_BINARY"):  # POSIX, POSIX, Windows (no newline translation)
        extra |= getattr(os, name, 0)
    descriptor = os.open(path, flags | extra, 0o666)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise PBRForgeError(f"'{path}' is not a regular file; delete it and run again.")
    return descriptor


class OutputFolderLock:
    """Exclusive lock on an output folder for one run (`convert` or `batch`): two runs writing into
    one folder could mix two sets' maps. The operating system drops the lock when the process ends,
    so a killed run leaves no stale lock; the small lock file itself stays (deleting it would race
    the next run). The lock file lies in `lock_dir` (default: the output folder; a batch keeps it in
    its run-files folder). Creates the folder; PBRForgeError when it cannot be written,
    OutputFolderBusy when another run holds the lock."""

    def __init__(self, output_dir: Path, lock_dir: Path | None = None):
        self.path = Path(lock_dir if lock_dir is not None else output_dir) / LOCK_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._descriptor = open_own_file(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise PBRForgeError(
                f"Cannot write to the output folder '{output_dir}' ({exc.strerror or exc}); "
                "choose a writable folder.") from exc
        try:
            _lock_exclusively(self._descriptor)
        except OSError:
            holder = _lock_holder(self._descriptor)
            os.close(self._descriptor)
            raise OutputFolderBusy(
                f"Another PBR Forge run{holder} is writing into the output folder '{output_dir}'; wait until "
                "it has finished or choose another output folder.") from None
        os.ftruncate(self._descriptor, 0)
        os.write(self._descriptor, f"{os.getpid()}\n".encode())  # for the message another run shows

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing drops the lock
            self._descriptor = None


def _lock_exclusively(descriptor: int) -> None:
    """Raises OSError when another process holds the lock."""
    if os.name == "nt":
        import msvcrt

        os.lseek(descriptor, 0, os.SEEK_SET)
        msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _lock_holder(descriptor: int) -> str:
    try:
        os.lseek(descriptor, 0, os.SEEK_SET)
        pid = int(os.read(descriptor, 32).decode().strip())
    except (OSError, ValueError):
        return ""
    return f" (process {pid})"


# --- journal -----------------------------------------------------------------------------------

class Journal:
    """Append-only JSON-lines record of finished sets; the last record of a set wins.

    A line cut short by a kill does not parse and is ignored: its set simply runs again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        self._stream = os.fdopen(open_own_file(path, os.O_RDWR | os.O_APPEND | os.O_CREAT), "r+b")
        content = self._stream.read()
        for line in content.decode("utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                self.records[record["key"]] = record
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
        self._lock = threading.Lock()
        self._ends_mid_line = bool(content) and not content.endswith(b"\n")

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if self._ends_mid_line:  # a kill cut the last line short: start a fresh one
                line = "\n" + line
                self._ends_mid_line = False
            self._stream.write(line.encode("utf-8"))
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self.records[record["key"]] = record

    def close(self) -> None:
        with self._lock:
            self._stream.close()


# --- the job -----------------------------------------------------------------------------------

class BatchJob:
    """Convert every set of a mod folder, one set per `step()`; see the module docstring."""

    def __init__(self, input_dir, output_dir, *, fmt: str = "truepbr", provider: str = "auto",
                 models_dir=None, allow_output_inside_input: bool = False, converter=None,
                 summary_path=None, model_space_normals: str = "skip", smooth_angle: float | None = None,
                 patcher_name: str | None = None, tile: int | None = None, overlap: int | None = None,
                 normal_convention: str = "auto", overwrite: bool = True):
        """model_space_normals: see MODEL_SPACE_NORMAL_CHOICES. smooth_angle: written into every patcher
        entry only when given. patcher_name: the patcher JSON's name (default: the mod folder's).
        tile, overlap: for the converter the job makes (default: the manifest's; not with `converter`).
        normal_convention: the green channel of every normal map, or "auto" (from each normal's name).
        overwrite: False fails a set (before converting it) whose output files already exist, unless
        the journal says an earlier run of this batch wrote them, and leaves a patcher JSON alone that
        was there before this batch first ran (the Blender preference)."""
        if fmt not in FORMATS:
            raise PBRForgeError(f"Unknown output format '{fmt}'; choose one of {', '.join(FORMATS)}.")
        if model_space_normals not in MODEL_SPACE_NORMAL_CHOICES:
            raise PBRForgeError(f"Unknown model-space normal handling '{model_space_normals}'; choose one of "
                                f"{', '.join(MODEL_SPACE_NORMAL_CHOICES)}.")
        if normal_convention not in NORMAL_CONVENTIONS:
            raise PBRForgeError(f"Unknown normal convention '{normal_convention}'; choose one of "
                                f"{', '.join(NORMAL_CONVENTIONS)}.")
        if converter is not None and (tile, overlap) != (None, None):
            raise ValueError("tile and overlap are for the converter the job makes; set them on `converter`")
        self.normal_convention = normal_convention
        self.overwrite = overwrite
        self.input_dir = Path(input_dir)
        self.output_dir = Path(output_dir)
        self.run_files_dir = run_files_dir(self.output_dir)
        self.fmt = fmt
        self._truepbr = fmt in ("truepbr", "both")
        self.model_space_normals = model_space_normals
        self.smooth_angle = smooth_angle
        self.patcher_name = patcher_name
        if not self.input_dir.is_dir():
            raise PBRForgeError(f"The input folder '{self.input_dir}' does not exist; choose a mod folder.")
        check_output_folder(self.input_dir, self.output_dir, allow_output_inside_input)
        self.summary_path = Path(summary_path) if summary_path else default_summary_path(self.output_dir)
        self._started = time.monotonic()

        self.sets, self.ignored = discover(self.input_dir, exclude=(self.output_dir, self.run_files_dir))
        archives = bsa_archives(self.input_dir)
        if archives and not self.sets:
            raise PBRForgeError(
                f"The mod folder '{self.input_dir}' holds its textures only in BSA archives ({', '.join(archives)}); "
                "extract them first (e.g. with BSA Browser or Cathedral Assets Optimizer) and run the batch on "
                "the extracted folder.")
        # The sets a True PBR rule left out, by rule; model-space sets that are kept are listed too.
        self.left_out_by_rule: dict[str, list[str]] = {"landscape": [], "skin": [], "model_space_normal": []}
        if self._truepbr:
            kept = []
            for item in self.sets:
                excluded = truepbr_exclusion(item, model_space_normals)
                if excluded is None:
                    kept.append(item)
                    continue
                rule, reason = excluded
                self.left_out_by_rule[rule].append(item.display)
                self.ignored.append({"texture": item.display, "reason": reason})
            self.sets = kept
            self.ignored.sort(key=lambda entry: entry["texture"])

        if converter is None:
            from .pipeline import Converter  # onnxruntime is imported only when a job really runs
            converter = Converter(models_dir=models_dir, provider=provider, tile=tile, overlap=overlap)
        converter.load_models()  # a model onnxruntime cannot load stops the batch here, not every set
        self._converter = converter
        self._models_sha = _models_fingerprint(converter)
        self._png_suffixes = _png_suffixes(converter) if fmt in ("blender", "both") else None
        settings = {"truepbr_rules": TRUEPBR_RULES_VERSION, "model_space_normals": model_space_normals,
                    "smooth_angle": smooth_angle} if self._truepbr else {}
        # Conversion settings other than the defaults change the maps: a re-run with other ones converts
        # again. Recorded only when given, so journals of runs with the defaults stay valid.
        settings.update({key: value for key, value in (("tile", tile), ("overlap", overlap)) if value is not None})
        if normal_convention != "auto":
            settings["normal_convention"] = normal_convention
        self._settings = settings or None

        refuse_link(self.run_files_dir)
        # before cleanup: no other run's temporaries
        self._output_lock = OutputFolderLock(self.output_dir, lock_dir=self.run_files_dir)
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _refuse_links_out_of(self.output_dir)
            _remove_stale_temporaries(self.output_dir)
            _remove_stale_temporaries(self.run_files_dir)
            removed_legacy = _remove_legacy_run_files(self.output_dir)
            self._journal = Journal(self.run_files_dir / JOURNAL_NAME)
            # A patcher JSON already there is this batch's own when an earlier run journalled sets.
            self._patcher_json_is_ours = bool(self._journal.records)
        except OSError as exc:
            self._output_lock.release()
            raise PBRForgeError(
                f"Cannot write to the output folder '{self.output_dir}' ({exc.strerror or exc}); "
                "choose a writable folder.") from exc
        except PBRForgeError:
            self._output_lock.release()
            raise

        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pbr-forge-batch")
        self._pending: deque[Future] = deque()
        self._prefetched: dict[int, Future] = {}
        self._index = 0
        self._cancelled = False
        self.done = False
        self.summary = {
            "input": str(self.input_dir), "output": str(self.output_dir), "format": fmt,
            "provider": converter.provider,
            "run_files": str(self.run_files_dir),
            "sets": len(self.sets), "converted": 0, "skipped": 0, "failed": 0,
            "failures": [], "flat_normal": [],
            # Sets the True PBR rules left out (each also in `ignored`, with its reason) or, for
            # model-space normals kept, converted with "lock_normal".
            "model_space_normal": {
                "handling": model_space_normals,
                "sets": sorted(self.left_out_by_rule["model_space_normal"]
                               + [s.display for s in self.sets if self._truepbr and s.model_space_normal]),
            },
            "skin": self.left_out_by_rule["skin"],
            "landscape": self.left_out_by_rule["landscape"],
            "ignored": self.ignored, "warnings": [], "cancelled": False,
            "patcher_json": None, "seconds": 0.0,
            # Per converted set: score, verdict, flags, reasons (docs/validation.md); the sets that
            # warn or fail, and the contact sheet that shows them.
            "validation": {}, "flagged": [], "contact_sheet": None,
        }
        self._sheet_entries: list[SheetEntry] = []
        if removed_legacy:
            self.summary["warnings"].append(
                f"Removed {', '.join(removed_legacy)} left in the output folder by an earlier version; the run's "
                f"own files now live in '{self.run_files_dir}'.")
        if archives:
            self.summary["warnings"].append(
                f"The BSA archives {', '.join(archives)} were not read; extract them first to convert their textures.")
        if not self.sets:
            self._finish()

    # -- public API --

    @property
    def handled(self) -> int:
        """How many sets have been converted, skipped or failed so far."""
        return self._index

    @property
    def progress(self) -> float:
        return 1.0 if not self.sets else self.handled / len(self.sets)

    def step(self) -> float:
        """Convert (or skip) the next set; returns the fraction of sets handled so far."""
        if self.done:
            return 1.0
        if self._cancelled or self._index >= len(self.sets):
            self._finish()
            return 1.0
        index = self._index
        self._index += 1
        item = self.sets[index]
        prepared = self._prefetched.pop(index, None) or self._pool.submit(self._prepare, item)
        if index + 1 < len(self.sets):
            self._prefetched[index + 1] = self._pool.submit(self._prepare, self.sets[index + 1])
        try:
            kind, inputs, diffuse, normal, glow, notes = prepared.result()
        except Exception as exc:
            self._fail(item, exc, "read the textures", inputs=None)
            return self.progress
        if kind == "skip":
            with self._lock:
                self.summary["skipped"] += 1
            return self.progress
        convention = input_convention(self.normal_convention, item.normal)
        original = validation.original_preview_or_none(diffuse, normal)
        try:
            result = self._converter.convert(diffuse, normal, normal_convention=convention)
        except Exception as exc:
            self._fail(item, exc, "convert the textures", inputs=inputs)
            return self.progress
        # Keep one set encoding while the next one infers; more would only hold memory.
        while self._pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, item, inputs, result, glow, notes, original))
        return self.progress

    def cancel(self) -> None:
        """Stop after the sets already converted are written; the journal lets a re-run resume."""
        if self.done:
            return
        self._cancelled = True
        self.summary["cancelled"] = True
        self._finish()

    # -- worker-thread parts --

    def _prepare(self, item: TextureSet):
        """Hash the inputs; decode them unless the journal says the set is already done.

        Each file is read once and the journal's hash is of the very bytes decoded: a file saved
        while the batch runs cannot leave an output of one version recorded as the other.
        """
        diffuse = read_file_bytes(item.diffuse)
        normal = read_file_bytes(item.normal) if item.normal else None
        glow = read_file_bytes(item.glow) if item.glow and self._truepbr else None
        inputs = {
            "diffuse": hashlib.sha256(diffuse).hexdigest(),
            "normal": hashlib.sha256(normal).hexdigest() if normal is not None else None,
            "models": self._models_sha,
        }
        if glow is not None:
            inputs["glow"] = hashlib.sha256(glow).hexdigest()
        if self._settings is not None:
            inputs["settings"] = self._settings
        if self._is_done(item, inputs):
            return "skip", inputs, None, None, None, []
        if not self.overwrite:
            self._check_targets_free(item)
        notes = name_warnings(item) if self._truepbr else []
        diffuse = decode_image(diffuse, str(item.diffuse))
        if normal is not None:  # without one the converter uses a flat normal
            normal = decode_image(normal, str(item.normal))
        if glow is not None:
            glow = decode_image(glow, str(item.glow))
        if self._truepbr:
            size = diffuse.shape[:2]
            diffuse = _block_aligned(diffuse, "diffuse", notes)
            # A normal of the diffuse's old size follows it; one of another size the converter resamples.
            if diffuse.shape[:2] != size and normal is not None and normal.shape[:2] == size:
                normal = resize_wrap(normal, *diffuse.shape[:2])
            if glow is not None:
                glow = _block_aligned(glow, "glow map", notes)
        return "convert", inputs, diffuse, normal, glow, notes

    def _write(self, item: TextureSet, inputs: dict, result, glow, notes: list[str], original=None) -> None:
        started = time.monotonic()
        warnings = notes + list(result.warnings)
        checked = validation.validate_or_none(original, result)
        try:
            outputs = []
            entry = None
            if self._truepbr:
                lock_normal = item.model_space_normal is not None  # only reached with model_space_normals="keep"
                written = truepbr.write_truepbr_set(result, self.output_dir, item.relative_stem,
                                                    glow=glow, lock_normal=lock_normal)
                outputs += [self._relative_output(p) for p in written.values()]
                entry = truepbr.patcher_entry(item.relative_stem, result, emissive=glow is not None,
                                              lock_normal=lock_normal, smooth_angle=self.smooth_angle)
            if self.fmt in ("blender", "both"):
                outputs += self._write_png_set(item, result)
            self._journal.append({
                "key": item.key, "status": "done", "texture": item.display, "relative_stem": item.relative_stem,
                "format": self.fmt, "inputs": inputs, "outputs": outputs, "patcher": entry,
                "flat_normal": item.normal is None, "warnings": warnings,
                "validation": checked.as_record() if checked else None,
                "seconds": round(time.monotonic() - started + result.seconds, 3),
            })
        except Exception as exc:
            self._fail(item, exc, "write the outputs", inputs=inputs)
            return
        with self._lock:
            self.summary["converted"] += 1
            self.summary["provider"] = result.provider  # what really ran (after any fallback)
            self.summary["warnings"] += [f"{item.display}: {w}" for w in warnings]
            if checked is not None:
                self._record_validation(item, checked)

    def _record_validation(self, item: TextureSet, checked) -> None:
        self.summary["validation"][item.display] = checked.as_record()
        if checked.verdict != "pass":
            self.summary["flagged"].append(item.display)
            self._sheet_entries.append(SheetEntry(
                item.display, checked.verdict, checked.score, tuple(checked.reasons),
                thumbnail(checked.original_render), thumbnail(checked.converted_render)))

    def _write_png_set(self, item: TextureSet, result) -> list[str]:
        from .outputs import write_png_set

        relative = PurePosixPath(item.relative_stem)
        folder = naming.safe_join(self.output_dir, PurePosixPath(BLENDER_FOLDER) / relative.parent)
        inputs = [p for p in (item.diffuse, item.normal) if p is not None]
        written = write_png_set(result, folder, relative.name, self._png_suffixes, inputs=inputs)
        return [self._relative_output(path) for path in written.values()]

    # -- bookkeeping --

    def _targets(self, item: TextureSet) -> list[str]:
        """The files the set's outputs will have, relative to the output folder."""
        targets = []
        if self._truepbr:
            names = naming.truepbr_names(item.relative_stem, optional=("glow",) if item.glow else ())
            if item.model_space_normal is not None:
                del names["normal"]  # lock_normal: the mesh keeps its own
            targets += names.values()
        if self.fmt in ("blender", "both"):
            relative = PurePosixPath(item.relative_stem)
            folder = PurePosixPath(BLENDER_FOLDER) / relative.parent
            targets += [(folder / name).as_posix()
                        for name in naming.png_set_names(relative.name, self._png_suffixes).values()]
        return targets

    def _check_targets_free(self, item: TextureSet) -> None:
        """With overwrite off: refuse a set whose output files exist and are not this batch's own."""
        own = set(self._journal.records.get(item.key, {}).get("outputs", ()))
        for relative in self._targets(item):
            if relative not in own and naming.safe_join(self.output_dir, relative).exists():
                raise OutputExists(self.output_dir / relative)

    def _relative_output(self, path: Path) -> str:
        return Path(path).relative_to(self.output_dir).as_posix()

    def _is_done(self, item: TextureSet, inputs: dict) -> bool:
        record = self._journal.records.get(item.key)
        return (
            record is not None and record.get("status") == "done" and record.get("inputs") == inputs
            and record.get("format") in (self.fmt, "both")
            and all((self.output_dir / rel).is_file() for rel in record.get("outputs", ()))
        )

    def _fail(self, item: TextureSet, exc: BaseException, what: str, inputs: dict | None) -> None:
        reason = user_sentence(exc, what)
        record = {"key": item.key, "status": "failed", "texture": item.display,
                  "relative_stem": item.relative_stem, "format": self.fmt, "inputs": inputs, "reason": reason}
        if not isinstance(exc, (PBRForgeError, OSError)):
            record["traceback"] = "".join(traceback.format_exception(exc))
        try:
            self._journal.append(record)
        except OSError:
            pass  # the failure is still reported in the summary
        with self._lock:
            self.summary["failed"] += 1
            self.summary["failures"].append({"texture": item.display, "reason": reason})

    def _finish(self) -> None:
        if self.done:
            return
        for future in self._prefetched.values():
            future.cancel()
        while self._pending:
            self._pending.popleft().result()
        self._pool.shutdown(wait=True)
        records = self._journal.records
        self.summary["flat_normal"] = [s.display for s in self.sets if s.normal is None
                                       and records.get(s.key, {}).get("status") == "done"]
        if self._truepbr:
            self._write_patcher_json()
        self._journal.close()
        self._write_contact_sheet()
        self.summary["failures"].sort(key=lambda f: f["texture"])
        self.summary["seconds"] = round(time.monotonic() - self._started, 3)
        self.done = True
        self._write_summary()
        self._output_lock.release()

    def _write_patcher_json(self) -> None:
        records = self._journal.records
        entries = [records[s.key]["patcher"] for s in self.sets
                   if records.get(s.key, {}).get("status") == "done" and records[s.key].get("patcher")]
        if not entries:
            return
        name = _safe_file_stem(self.patcher_name or mod_name(self.input_dir)) + ".json"
        try:
            path = naming.safe_join(self.output_dir, f"{truepbr.PATCHER_FOLDER}/{name}")
            if not self.overwrite and not self._patcher_json_is_ours and path.exists():
                raise OutputExists(path)
            truepbr.write_patcher_json(entries, path)
            self.summary["patcher_json"] = str(path)
        except (OSError, PBRForgeError) as exc:
            # Not a set, but the run failed to deliver a file: listed with the failures (exit code 1).
            self.summary["failures"].append({"texture": f"{truepbr.PATCHER_FOLDER}/{name}",
                                             "reason": user_sentence(exc, "write the patcher JSON")})

    def _write_contact_sheet(self) -> None:
        self.summary["flagged"].sort()
        try:
            written = write_contact_sheet(self._sheet_entries, self.run_files_dir)  # beside the summary, not in the mod
        except OSError as exc:
            self.summary["warnings"].append(user_sentence(exc, "write the contact sheet"))
            return
        if written:
            self.summary["contact_sheet"] = {kind: str(path) for kind, path in written.items()}

    def _write_summary(self) -> None:
        try:
            write_atomically(self.summary_path, (json.dumps(self.summary, indent=2, ensure_ascii=False) + "\n").encode())
        except OSError as exc:
            self.summary["warnings"].append(user_sentence(exc, "write the summary"))


def _block_aligned(image, what: str, notes: list[str]):
    """The image resampled to whole 4x4 blocks when its size is not (the game refuses such a
    block-compressed texture); the note says so. UVs are normalised, so the mapping is unchanged."""
    height, width = image.shape[:2]
    if dds.is_block_aligned(width, height):
        return image
    new_width, new_height = dds.block_aligned_size(width, height)
    notes.append(f"the {what} is {width}x{height}, which the game refuses for a compressed texture (sides must "
                 f"be multiples of {dds.BLOCK_SIDE}); it was resampled to {new_width}x{new_height} "
                 "(the mapping is unchanged).")
    return resize_wrap(image, new_height, new_width)


def mod_name(input_dir: Path) -> str:
    """The mod's name for its patcher JSON: the input folder's, or the folder above a generic one
    (`MyMod/textures`, `MyMod/Data`), so two mods' JSON files never share a name."""
    folder = Path(input_dir).resolve()
    while folder.name.lower() in _GENERIC_FOLDERS and folder.parent != folder:
        folder = folder.parent
    return folder.name


def _safe_file_stem(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in " _-." else "_" for c in name).strip(" .")
    return cleaned or "pbr_forge"


# The folders a job writes into (and cleans up) under the output folder.
_OUTPUT_FOLDERS = ("textures", BLENDER_FOLDER, truepbr.PATCHER_FOLDER)


def _refuse_links_out_of(output_dir: Path) -> None:
    """Refuse to start when a folder the job writes is a link leading out of the output folder
    (e.g. `textures` linked into the mod): every file written there would land outside it."""
    root = output_dir.resolve()
    for sub in _OUTPUT_FOLDERS:
        target = (output_dir / sub).resolve()
        if target != root and root not in target.parents:
            raise PBRForgeError(
                f"'{output_dir / sub}' is a link to '{target}', outside the output folder; PBR Forge does not "
                "write through links. Remove the link or choose another output folder.")


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Delete the temporary files a killed run left in the folders this job writes (`.*.tmp`).

    Links are never followed: a `textures` link into the mod must not cost the mod any file.
    """
    candidates = [entry for entry in output_dir.iterdir()]
    for sub in _OUTPUT_FOLDERS:
        top = output_dir / sub
        if top.is_symlink() or not top.is_dir():
            continue
        for folder, _subfolders, files in os.walk(top):  # does not enter links to folders
            candidates += [Path(folder) / name for name in files]
    for path in candidates:
        if fnmatch.fnmatch(path.name, f".*{TEMPORARY_SUFFIX}") and stat.S_ISREG(path.lstat().st_mode):
            path.unlink()


def _remove_legacy_run_files(output_dir: Path) -> list[str]:
    """Delete the journal and summary an earlier version wrote into the output folder (a link is
    removed, never followed); the names removed."""
    removed = []
    for name in _LEGACY_RUN_FILES:
        path = output_dir / name
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed.append(name)
    return removed


def _models_fingerprint(converter) -> str:
    """sha256 of the models manifest, which itself holds the sha256 of every model file."""
    return sha256_of(Path(converter.manifest.models_dir) / MANIFEST_NAME)


def _png_suffixes(converter) -> dict[str, str]:
    return dict(converter.manifest.png_suffixes)


def run_batch(input_dir, output_dir, *, progress: bool = True, **options) -> dict:
    """Run a BatchJob to the end (with a tqdm bar on stderr when progress is True); returns the summary.

    Ctrl-C (KeyboardInterrupt) cancels: the sets in flight are written, the summary says
    `cancelled`, and a re-run resumes.
    """
    job = BatchJob(input_dir, output_dir, **options)
    bar = None
    if progress and job.sets:
        from tqdm import tqdm

        bar = tqdm(total=len(job.sets), unit="set", desc="PBR Forge")
    try:
        while not job.done:
            before = job.handled
            job.step()
            if bar is not None:
                bar.update(job.handled - before)
    except KeyboardInterrupt:
        job.cancel()
    finally:
        if bar is not None:
            bar.close()
    return job.summary

