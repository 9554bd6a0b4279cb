"""One-time dataset pre-flight audits (plan step 0). Dry run by default; `--apply` acts; nothing is deleted.

Layout (docs/data.md): `<DIR>/inputs/<rel>/<name>.dds|png|tga` (+ `_n`), `<DIR>/targets/<rel>/<name>.*`
(+ `_rmaos`, `_p`, `_n`), as trainer.data.synth writes and SkyrimDataset.from_root reads.

* `duplicates`: a diffuse whose True PBR albedo is the same picture (within DUPLICATE_MEAN_TOLERANCE /
  DUPLICATE_P99_TOLERANCE, which allow one BC1 re-encode) teaches nothing about de-lighting. With
  --apply its input and target files move to `<DIR>/duplicates/{inputs,targets}/<rel>/`; training uses
  them only as albedo-identity (auto-encoder) samples, via SkyrimDataset(use_duplicates=True).
* `black-diffuse`: a diffuse that displays (nearly) black is either a genuine no-diffuse material
  (kept, albedo unsupervised) or a conversion mistake: zero alpha hiding the colour, the picture in
  the alpha channel, 16-bit values stored without scaling, or every byte zero. Mistakes in PNGs are
  fixed (after a backup copy under `<DIR>/preflight_backup/`); the others are excluded from training.

Decisions go to `<DIR>/preflight.json` (with --apply), which SkyrimDataset reads, and to --json FILE.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from addon.engine import naming
from addon.engine.errors import ImageReadError
from addon.engine.imageio import read_image, write_png
from trainer.data.common import as_rgb
from trainer.data.sample import DataSourceError
from trainer.data.skyrim import BACKUP_DIR, DUPLICATES_DIR, PREFLIGHT_FILE, find_pairs

DUPLICATE_MEAN_TOLERANCE = 3 / 255   # mean |diffuse - albedo| over all pixels and channels
DUPLICATE_P99_TOLERANCE = 16 / 255   # 99th percentile of |diffuse - albedo| (BC1 blocks stay below)
BLACK_LEVEL = 8 / 255                # a diffuse is "black" when 99 % of its displayed pixels are below
STRUCTURE_STD = 0.02                 # a channel with this much spread carries a picture
LARGEST_8BIT_IN_16BIT = 255 / 65535  # 8-bit values written into a 16-bit PNG without scaling top out here


@dataclass
class Decision:
    key: str          # relative stem, e.g. textures/architecture/wood01
    path: str
    decision: str     # duplicate | fixed | fixable | unsupervised | excluded
    reason: str
    action: str = ""  # what --apply did (empty in a dry run)


def _marker(root: Path) -> dict:
    path = root / PREFLIGHT_FILE
    marker = json.loads(path.read_text()) if path.is_file() else {}
    for field in ("duplicates", "unsupervised", "excluded", "fixed"):
        marker.setdefault(field, [])
    return marker


def _save_marker(root: Path, marker: dict, decisions: list[Decision]) -> None:
    for d in decisions:
        field = {"duplicate": "duplicates", "unsupervised": "unsupervised", "excluded": "excluded",
                 "fixed": "fixed"}.get(d.decision)
        if field and d.key not in marker[field]:
            marker[field].append(d.key)
    (root / PREFLIGHT_FILE).write_text(json.dumps({k: sorted(v) for k, v in marker.items()}, indent=1))


def _check_layout(root: Path) -> Path:
    inputs = root / "inputs"
    if not inputs.is_dir():
        raise DataSourceError(f"'{root}' has no inputs/ folder; pre-flight expects <DIR>/inputs and <DIR>/targets "
                              "(see docs/data.md).")
    return inputs


# ---------------------------------------------------------------- duplicates

def compare(diffuse: np.ndarray, albedo: np.ndarray) -> tuple[bool, str]:
    """(is duplicate, reason) for two decoded images."""
    a, b = as_rgb(diffuse), as_rgb(albedo)
    if a.shape != b.shape:
        return False, f"different sizes ({a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]})"
    diff = np.abs(a - b)
    mean, p99 = float(diff.mean()), float(np.percentile(diff, 99))
    figures = f"mean |diff| {mean * 255:.2f}/255, 99th percentile {p99 * 255:.1f}/255"
    if mean <= DUPLICATE_MEAN_TOLERANCE and p99 <= DUPLICATE_P99_TOLERANCE:
        return True, f"albedo equals the diffuse ({figures})"
    return False, f"albedo differs from the diffuse ({figures})"


def _move(path: Path, source_root: Path, dest_root: Path) -> None:
    dest = dest_root / path.relative_to(source_root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(dest))


def _set_files(folder: Path, base: str) -> list[Path]:
    """Every file of a texture set: `<base>.*` and `<base>_<suffix>.*` for the known suffixes."""
    out = []
    for path in folder.iterdir() if folder.is_dir() else ():
        stem_base, suffix = naming.split_suffix(path.stem)
        if path.is_file() and path.suffix.lower() in naming.TEXTURE_EXTENSIONS and \
                (path.stem.lower() == base.lower() or (suffix and stem_base.lower() == base.lower())):
            out.append(path)
    return out


def find_duplicates(root, apply: bool = False) -> list[Decision]:
    root = Path(root)
    inputs = _check_layout(root)
    targets = root / "targets"
    decisions = []
    for pair in find_pairs(inputs, targets if targets.is_dir() else None):
        if pair.albedo is None:
            continue
        try:
            same, reason = compare(read_image(pair.diffuse), read_image(pair.albedo))
        except ImageReadError as exc:
            decisions.append(Decision(pair.key, str(pair.diffuse), "skipped", str(exc)))
            continue
        if not same:
            continue
        decision = Decision(pair.key, str(pair.diffuse), "duplicate", reason)
        if apply:
            rel_dir = pair.diffuse.parent.relative_to(inputs)
            base = naming.split_suffix(pair.diffuse.stem)[0]
            for tree, dest in ((inputs, root / DUPLICATES_DIR / "inputs"), (targets, root / DUPLICATES_DIR / "targets")):
                for path in _set_files(tree / rel_dir, base):
                    _move(path, tree, dest)
            decision.action = f"moved to {DUPLICATES_DIR}/"
        decisions.append(decision)
    if apply:
        _save_marker(root, _marker(root), decisions)
    return decisions


# ---------------------------------------------------------------- black diffuse

def diagnose_black(image: np.ndarray, has_glow_map: bool) -> tuple[str, str, np.ndarray | None]:
    """(decision, reason, fixed pixels or None) for a decoded diffuse. Decision is "ok" when the
    diffuse is not black, "fixable" with the repaired pixels, "unsupervised" or "excluded"."""
    channels = image.shape[-1] if image.ndim == 3 else 1
    image = image if image.ndim == 3 else image[..., None]
    rgb = as_rgb(image)
    alpha = image[..., -1] if channels in (2, 4) else None
    displayed = rgb * (alpha[..., None] if alpha is not None else 1.0)
    if float(np.percentile(displayed, 99)) >= BLACK_LEVEL:
        return "ok", "the diffuse is not black", None
    colour_black = float(np.percentile(rgb, 99)) < BLACK_LEVEL
    if alpha is not None and float(alpha.max()) == 0.0:
        if not colour_black:
            return "fixable", "the alpha is zero everywhere and hides the colour; alpha set opaque", rgb
        if float(rgb.max()) == 0.0:
            return "excluded", "every pixel and the alpha are zero (premultiplied by a zero alpha): nothing to recover", None
    if alpha is not None and colour_black and float(alpha.std()) > STRUCTURE_STD:
        grey = np.repeat(alpha[..., None], 3, axis=-1)
        return "fixable", "the picture is in the alpha channel and the colour channels are empty; alpha moved to grey", grey
    peak = float(rgb.max())
    if 0.0 < peak <= LARGEST_8BIT_IN_16BIT + 1e-7:
        return "fixable", "16-bit file holding unscaled 8-bit values (near-black); rescaled by 257", \
            np.clip(rgb * (65535.0 / 255.0), 0, 1)
    if peak == 0.0:
        if has_glow_map:
            return "unsupervised", "black diffuse with a glow map: an emissive-only material; albedo not supervised", None
        return "excluded", "every pixel is zero and there is no glow map: a conversion mistake with nothing to recover", None
    return "unsupervised", "a genuinely dark material (faint detail under the black level); albedo not supervised", None


def audit_black_diffuse(root, apply: bool = False) -> list[Decision]:
    root = Path(root)
    inputs = _check_layout(root)
    decisions = []
    # Every diffuse, with or without a normal: a black one is worth a decision even when find_pairs skips it.
    for path, key in naming.diffuses_under(inputs):
        base = naming.split_suffix(path.stem)[0]
        if path.stat().st_size == 0 or not any(path.read_bytes()):
            decisions.append(Decision(key, str(path), "excluded", "the file is empty (every byte is zero)"))
            continue
        try:
            image = read_image(path)
        except ImageReadError as exc:
            decisions.append(Decision(key, str(path), "excluded", str(exc)))
            continue
        glow = any(p.stem.lower() == f"{base}_g".lower() for p in path.parent.iterdir())
        decision, reason, fixed = diagnose_black(image, glow)
        if decision == "ok":
            continue
        entry = Decision(key, str(path), decision, reason)
        if decision == "fixable" and path.suffix.lower() != ".png":
            entry.decision, entry.reason = "excluded", f"{reason.split(';')[0]}; only PNGs are repaired: re-export it"
        elif decision == "fixable" and apply:
            backup = root / BACKUP_DIR / "inputs" / path.relative_to(inputs)
            backup.parent.mkdir(parents=True, exist_ok=True)
            if not backup.exists():  # the first backup is the original; never overwrite it
                shutil.copy2(path, backup)
            write_png(path, fixed)
            entry.decision, entry.action = "fixed", f"repaired; original kept in {BACKUP_DIR}/"
        decisions.append(entry)
    if apply:
        _save_marker(root, _marker(root), decisions)
    return decisions


# ---------------------------------------------------------------- command line

def register_cli(subparsers) -> None:
    """`python -m trainer preflight duplicates|black-diffuse --data DIR [--apply] [--json FILE]`."""
    parser = subparsers.add_parser("preflight", help="one-time dataset audits (dry run unless --apply)")
    commands = parser.add_subparsers(dest="preflight_command", required=True)
    for name, help_text in (("duplicates", "find diffuse == albedo pairs; --apply moves them to DIR/duplicates/"),
                            ("black-diffuse", "find black diffuses; --apply repairs PNG mistakes and marks the rest")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--data", required=True, type=Path, help="folder with inputs/ and targets/")
        command.add_argument("--apply", action="store_true", help="act on the decisions (default: report only)")
        command.add_argument("--json", type=Path, help="write the decisions to this JSON file")
        command.set_defaults(func=run_cli)


def run_cli(args) -> int:
    audit = find_duplicates if args.preflight_command == "duplicates" else audit_black_diffuse
    decisions = audit(args.data, apply=args.apply)
    for d in decisions:
        print(f"{d.decision:12s} {d.key}: {d.reason}" + (f" [{d.action}]" if d.action else ""))
    counts = {}
    for d in decisions:
        counts[d.decision] = counts.get(d.decision, 0) + 1
    print(f"{args.preflight_command}: {counts or 'nothing to report'}" + ("" if args.apply else " (dry run: nothing changed)"))
    if args.json:
        args.json.write_text(json.dumps({"command": args.preflight_command, "applied": args.apply, "counts": counts,
                                         "decisions": [asdict(d) for d in decisions]}, indent=1))
    return 0
