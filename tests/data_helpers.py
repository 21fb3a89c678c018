"""Builders of tiny corpora for the data tests: JSONL files in every compression, gettext catalogs."""

import gzip
import json
import struct
from pathlib import Path


def write_jsonl(path: Path, records, compression: str | None = None) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records).encode()
    if compression == "gz":
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    elif compression == "zst":
        import zstandard

        path = path.with_name(path.name + ".zst")
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mo(path: Path, messages: dict[str, str]) -> Path:
    """A GNU .mo catalog (the format gettext.GNUTranslations reads), with a UTF-8 header."""
    entries = {"": "Content-Type: text/plain; charset=UTF-8\n", **messages}
    keys = sorted(entries)
    ids = [k.encode() for k in keys]
    strs = [entries[k].encode() for k in keys]
    n = len(keys)
    start = 7 * 4 + 16 * n
    id_table, str_table, blob = [], [], b""
    for s in ids:
        id_table.append((len(s), start + len(blob)))
        blob += s + b"\0"
    for s in strs:
        str_table.append((len(s), start + len(blob)))
        blob += s + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, n, 7 * 4, 7 * 4 + 8 * n, 0, 0)
    tables = b"".join(struct.pack("<2I", *e) for e in id_table + str_table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)
    return path
