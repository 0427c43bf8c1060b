"""Images for people: a one-line summary instead of the blob's bytes.

On the wire an image blob is a list of byte values (a 200 KB image is 200,000
numbers); human views show `image ID: SIZE bytes, TYPE, sha256 PREFIX` instead.
`--json` keeps the wire form. Pure: no Rich, no I/O.
"""

from __future__ import annotations

import hashlib

#: Leading bytes → image type (the formats a model runtime is likely to be handed).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_FTYP_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF"}


def image_type(data: bytes) -> str:
    """The type told by the blob's first bytes; `unknown type` when none matches."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp" and data[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[data[8:12]]
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return "unknown type"


def summary(image_id: str, blob: bytes | None) -> str:
    """`image shot: 204800 bytes, PNG, sha256 9f86d081884c`."""
    if blob is None:
        return f"image {image_id}: no blob"
    digest = hashlib.sha256(blob).hexdigest()[:12]
    return f"image {image_id}: {len(blob)} bytes, {image_type(blob)}, sha256 {digest}"
