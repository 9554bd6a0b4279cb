"""Convert a whole mod folder: discovery, a resumable run journal, and a kill-safe batch job.

A set is one diffuse texture with its `_n` normal (or a flat normal when it has none). The job
converts one set per `step()`, so the Blender operator can drive it from a timer and the CLI
from a loop (`run_batch`).

Safety rules, in the order they matter to a modder:
- Originals are only ever opened for reading, and the output folder may not overlap the input
  folder (unless explicitly allowed).
- Every output file appears atomically (temporary file, then rename); a run journal
  (`.pbr_forge_journal.jsonl` in the output folder) gets one fsync'ed line per finished set with
  the sha256 of its inputs and of the models manifest. A re-run skips the sets whose inputs, models
  and outputs are unchanged, so a killed run loses only the sets in flight (the one being inferred
  and the one being encoded).
- One bad file never stops the batch: its set is recorded as failed with a one-sentence reason.

Throughput: inference runs on the calling thread (onnxruntime releases the GIL while it computes)
while a small thread pool reads and hashes the next set and block-compresses the previous one.
"""
from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


from . import naming, truepbr
from .errors import PBRForgeError
from .imageio import write_atomically, read_image
from .manifest import MANIFEST_NAME, sha256_of

FORMATS = ("truepbr", "blender", "both")
JOURNAL_NAME = ".pbr_forge_journal.jsonl"
SUMMARY_NAME = "pbr_forge_summary.json"
BLENDER_FOLDER = "blender"  # the PNG sets go to OUTDIR/blender/<folders under textures>/
# Extension preference when two files differ only by extension (iron.dds and iron.png).
_EXTENSION_RANK = {ext: rank for rank, ext in enumerate(naming.TEXTURE_EXTENSIONS)}


@dataclass(frozen=True)
class TextureSet:
    diffuse: Path
    normal: Path | None
    relative_stem: str  # the diffuse path under the textures folder, forward slashes, no extension
    display: str        # the diffuse path relative to the input folder, for messages

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


def discover(input_dir: str | os.PathLike, exclude: str | os.PathLike | None = None
             ) -> tuple[list[TextureSet], list[dict]]:
    """The conversion sets of a mod folder, and the texture files left out with the reason
    (normal maps used by a set are not listed).

    Left out: non-diffuse suffixes (_n, _g, _p, ...), Node Wrangler non-colour maps, anything under
    textures/pbr/ (True PBR files already) and under `exclude` (the output folder when allowed inside).
    """
    input_dir = Path(input_dir)
    excluded = Path(exclude).resolve() if exclude is not None else None
    ignored: list[tuple[Path, dict]] = []
    chosen: dict[str, TextureSet] = {}

    walks = ((root, entry) for root in textures_roots(input_dir) for entry in os.walk(root))
    for root, (folder, subfolders, files) in walks:
        folder = Path(folder)
        subfolders[:] = sorted(
            name for name in subfolders
            if not (folder == root and name.lower() == naming.TRUEPBR_FOLDER)
            and (excluded is None or (folder / name).resolve() != excluded)
        )
        for name in sorted(files):
            path = folder / name
            if not naming.is_texture_file(path):
                continue
            display = path.relative_to(input_dir).as_posix()
            relative = path.relative_to(root)
            role = naming.role_of(path)
            if role != "diffuse":
                ignored.append((path, {"texture": display, "reason": f"{role.replace('_', ' ')} map, not a diffuse"}))
                continue
            if naming.is_node_wrangler_map(path):
                ignored.append((path, {"texture": display,
                                       "reason": f"{naming.tag_role(path.stem)} map of a Node Wrangler set"}))
                continue
            item = TextureSet(path, naming.find_normal_for(path),
                              relative.with_suffix("").as_posix(), display)
            previous = chosen.get(item.key)
            if previous is not None:
                keep, drop = sorted((previous, item), key=lambda s: _EXTENSION_RANK[s.diffuse.suffix.lower()])
                ignored.append((drop.diffuse, {"texture": drop.display,
                                               "reason": f"same name as {keep.display}, which was used"}))
                item = keep
            chosen[item.key] = item
    used_normals = {s.normal for s in chosen.values() if s.normal is not None}
    ignored = [entry for path, entry in ignored if path not in used_normals]
    return sorted(chosen.values(), key=lambda s: s.key), ignored


def check_output_folder(input_dir: Path, output_dir: Path, allow_output_inside_input: bool) -> None:
    if not input_dir.is_dir():
        raise PBRForgeError(f"The input folder '{input_dir}' does not exist; choose a mod folder.")
    if output_dir.exists() and not output_dir.is_dir():
        raise PBRForgeError(f"The output '{output_dir}' is a file; choose a folder.")
    source, target = input_dir.resolve(), output_dir.resolve()
    if source == target or source in target.parents and not allow_output_inside_input:
        raise PBRForgeError(
            f"The output folder '{output_dir}' is inside the input folder; choose a separate folder "
            "so the originals stay untouched.")
    if target in source.parents:
        raise PBRForgeError(
            f"The input folder '{input_dir}' is inside the output folder; choose a separate output folder "
            "so the originals stay untouched.")


# --- journal -----------------------------------------------------------------------------------

class Journal:
    """Append-only JSON-lines record of finished sets; the last record of a set wins.

    A line cut short by a kill does not parse and is ignored: its set simply runs again.
    """

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.is_file():
            with open(path, encoding="utf-8", errors="replace") as stream:
                for line in stream:
                    try:
                        record = json.loads(line)
                        self.records[record["key"]] = record
                    except (ValueError, KeyError, TypeError):
                        continue
        self._lock = threading.Lock()
        self._stream = open(path, "a", encoding="utf-8")
        self._ends_mid_line = path.stat().st_size > 0 and not _ends_with_newline(path)

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if self._ends_mid_line:  # a kill cut the last line short: start a fresh one
                line = "\n" + line
                self._ends_mid_line = False
            self._stream.write(line)
            self._stream.flush()
            os.fsync(self._stream.fileno())
            self.records[record["key"]] = record

    def close(self) -> None:
        with self._lock:
            self._stream.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"


# --- the job -----------------------------------------------------------------------------------

def _reason(exc: BaseException, what: str) -> str:
    """One sentence for the user; unexpected exceptions say so (and the journal keeps the traceback)."""
    if isinstance(exc, PBRForgeError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" '{exc.filename}'" if exc.filename else ""
        return f"Could not {what}{where}: {exc.strerror or exc}; check free disk space and folder permissions."
    return f"Internal error while trying to {what} ({type(exc).__name__}: {exc}); please report it with the journal."


class BatchJob:
    """Convert every set of a mod folder, one set per `step()`; see the module docstring."""

    def __init__(self, input_dir, output_dir, *, fmt: str = "truepbr", provider: str = "auto",
                 models_dir=None, allow_output_inside_input: bool = False, converter=None,
                 summary_path=None):
        if fmt not in FORMATS:
            raise PBRForgeError(f"Unknown output format '{fmt}'; choose one of {', '.join(FORMATS)}.")
        self.input_dir = Path(input_dir)
        self.output_dir = Path(output_dir)
        self.fmt = fmt
        check_output_folder(self.input_dir, self.output_dir, allow_output_inside_input)
        self.summary_path = Path(summary_path) if summary_path else self.output_dir / SUMMARY_NAME
        self._started = time.monotonic()

        if converter is None:
            from .pipeline import Converter  # onnxruntime is imported only when a job really runs
            converter = Converter(models_dir=models_dir, provider=provider)
        self._converter = converter
        self._models_sha = _models_fingerprint(converter)
        self._png_suffixes = _png_suffixes(converter) if fmt in ("blender", "both") else None

        self.sets, self.ignored = discover(self.input_dir, exclude=self.output_dir)
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(self.output_dir)
            self._journal = Journal(self.output_dir / JOURNAL_NAME)
        except OSError as exc:
            raise PBRForgeError(
                f"Cannot write to the output folder '{self.output_dir}' ({exc.strerror or exc}); "
                "choose a writable folder.") from exc

        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pbr-forge-batch")
        self._pending: deque[Future] = deque()
        self._prefetched: dict[int, Future] = {}
        self._index = 0
        self._cancelled = False
        self.done = False
        self.summary = {
            "input": str(self.input_dir), "output": str(self.output_dir), "format": fmt,
            "provider": getattr(converter, "provider", provider),
            "sets": len(self.sets), "converted": 0, "skipped": 0, "failed": 0,
            "failures": [], "flat_normal": [],
            "ignored": self.ignored, "warnings": [], "cancelled": False,
            "patcher_json": None, "seconds": 0.0,
        }
        if not self.sets:
            self._finish()

    # -- public API --

    @property
    def progress(self) -> float:
        return 1.0 if not self.sets else self._index / len(self.sets)

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
            kind, inputs, diffuse, normal = prepared.result()
        except Exception as exc:
            self._fail(item, exc, "read the textures", inputs=None)
            return self.progress
        if kind == "skip":
            with self._lock:
                self.summary["skipped"] += 1
            return self.progress
        convention = naming.normal_convention_of(item.normal) if item.normal else "directx"
        try:
            result = self._converter.convert(diffuse, normal, normal_convention=convention)
        except Exception as exc:
            self._fail(item, exc, "convert the textures", inputs=inputs)
            return self.progress
        # Keep one set encoding while the next one infers; more would only hold memory.
        while self._pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write, item, inputs, result))
        return self.progress

    def cancel(self) -> None:
        """Stop after the sets already converted are written; the journal lets a re-run resume."""
        self._cancelled = True
        self.summary["cancelled"] = self._index < len(self.sets)
        self._finish()

    # -- worker-thread parts --

    def _prepare(self, item: TextureSet):
        """Hash the inputs; decode them unless the journal says the set is already done."""
        inputs = {
            "diffuse": sha256_of(item.diffuse),
            "normal": sha256_of(item.normal) if item.normal else None,
            "models": self._models_sha,
        }
        if self._is_done(item, inputs):
            return "skip", inputs, None, None
        diffuse = read_image(item.diffuse)
        normal = read_image(item.normal) if item.normal else None  # the converter uses a flat normal
        return "convert", inputs, diffuse, normal

    def _write(self, item: TextureSet, inputs: dict, result) -> None:
        started = time.monotonic()
        warnings = list(result.warnings)
        try:
            outputs = []
            entry = None
            if self.fmt in ("truepbr", "both"):
                written = truepbr.write_truepbr_set(result, self.output_dir, item.relative_stem)
                outputs += [self._relative_output(p) for p in written.values()]
                entry = truepbr.patcher_entry(item.relative_stem, result)
            if self.fmt in ("blender", "both"):
                outputs += self._write_png_set(item, result)
            self._journal.append({
                "key": item.key, "status": "done", "texture": item.display, "relative_stem": item.relative_stem,
                "format": self.fmt, "inputs": inputs, "outputs": outputs, "patcher": entry,
                "flat_normal": item.normal is None, "warnings": warnings,
                "seconds": round(time.monotonic() - started + result.seconds, 3),
            })
        except Exception as exc:
            self._fail(item, exc, "write the outputs", inputs=inputs)
            return
        with self._lock:
            self.summary["converted"] += 1
            self.summary["provider"] = result.provider  # what really ran (after any fallback)
            self.summary["warnings"] += [f"{item.display}: {w}" for w in warnings]

    def _write_png_set(self, item: TextureSet, result) -> list[str]:
        from .outputs import write_png_set

        relative = PurePosixPath(item.relative_stem)
        folder = naming.safe_join(self.output_dir, PurePosixPath(BLENDER_FOLDER) / relative.parent)
        inputs = [p for p in (item.diffuse, item.normal) if p is not None]
        written = write_png_set(result, folder, relative.name, self._png_suffixes, inputs=inputs)
        return [self._relative_output(path) for path in written.values()]

    # -- bookkeeping --

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
        reason = _reason(exc, what)
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
        if hasattr(self, "_pool"):
            for future in self._prefetched.values():
                future.cancel()
            while self._pending:
                self._pending.popleft().result()
            self._pool.shutdown(wait=True)
        if hasattr(self, "_journal"):
            records = self._journal.records
            self.summary["flat_normal"] = [s.display for s in self.sets if s.normal is None
                                           and records.get(s.key, {}).get("status") == "done"]
            if self.fmt in ("truepbr", "both"):
                self._write_patcher_json()
            self._journal.close()
        self.summary["failures"].sort(key=lambda f: f["texture"])
        self.summary["seconds"] = round(time.monotonic() - self._started, 3)
        self.done = True
        self._write_summary()

    def _write_patcher_json(self) -> None:
        records = self._journal.records
        entries = [records[s.key]["patcher"] for s in self.sets
                   if records.get(s.key, {}).get("status") == "done" and records[s.key].get("patcher")]
        if not entries:
            return
        name = _safe_file_stem(self.input_dir.resolve().name) + ".json"
        path = self.output_dir / truepbr.PATCHER_FOLDER / name
        try:
            truepbr.write_patcher_json(entries, path)
            self.summary["patcher_json"] = str(path)
        except OSError as exc:
            self.summary["warnings"].append(_reason(exc, "write the patcher JSON"))

    def _write_summary(self) -> None:
        try:
            write_atomically(self.summary_path, (json.dumps(self.summary, indent=2, ensure_ascii=False) + "\n").encode())
        except OSError as exc:
            self.summary["warnings"].append(_reason(exc, "write the summary"))


def _safe_file_stem(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in " _-." else "_" for c in name).strip(" .")
    return cleaned or "pbr_forge"


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Delete the temporary files a killed run left in the folders this job writes (`.name.XXXX.tmp`)."""
    for sub in ("textures", BLENDER_FOLDER, truepbr.PATCHER_FOLDER, "."):
        folder = output_dir / sub
        if not folder.is_dir():
            continue
        paths = folder.glob(".*.tmp") if sub == "." else folder.rglob(".*.tmp")
        for path in paths:
            if path.is_file():
                path.unlink()


def _models_fingerprint(converter) -> str:
    """sha256 of the models manifest, which itself holds the sha256 of every model file."""
    return sha256_of(Path(converter.manifest.models_dir) / MANIFEST_NAME)


def _png_suffixes(converter) -> dict[str, str]:
    return dict(converter.manifest.png_suffixes)


def run_batch(input_dir, output_dir, *, progress: bool = True, **options) -> dict:
    """Run a BatchJob to the end (with a tqdm bar on stderr when progress is True); returns the summary."""
    job = BatchJob(input_dir, output_dir, **options)
    bar = None
    if progress and job.sets:
        from tqdm import tqdm

        bar = tqdm(total=len(job.sets), unit="set", desc="PBR Forge")
    try:
        while not job.done:
            before = job._index
            job.step()
            if bar is not None:
                bar.update(job._index - before)
    except KeyboardInterrupt:
        job.cancel()
        raise
    finally:
        if bar is not None:
            bar.close()
    return job.summary


def cli_batch(args) -> int:
    """`python -m addon.cli batch`: 0 when every set converted or was already done, 1 when any set
    failed, 2 when the batch could not start. One line per failure, then a summary line."""
    import sys

    try:
        summary = run_batch(
            args.input, args.output, fmt=args.format, provider=args.provider, models_dir=args.models,
            allow_output_inside_input=args.allow_output_inside_input, summary_path=args.json,
        )
    except PBRForgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Cancelled; run the same command again to resume.", file=sys.stderr)
        return 130
    for failure in summary["failures"]:
        print(f"FAILED {failure['texture']}: {failure['reason']}")
    print(
        f"{summary['converted']} converted, {summary['skipped']} already done, {summary['failed']} failed, "
        f"{len(summary['flat_normal'])} without a normal map (flat normal used), "
        f"{len(summary['ignored'])} files ignored, in {summary['seconds']:.1f} s. "
        f"Summary: {args.json or Path(args.output) / SUMMARY_NAME}"
    )
    return 1 if summary["failed"] else 0
