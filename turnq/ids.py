"""Deterministic identifiers, exactly as spec/wire.md (*Identifier formats*) makes them."""

from __future__ import annotations

import hashlib
import unicodedata

# Other_Grapheme_Extend (Unicode PropList): Grapheme_Extend is Mn + Me + these.
_OTHER_GRAPHEME_EXTEND = (
    (0x09BE, 0x09BE), (0x09D7, 0x09D7), (0x0B3E, 0x0B3E), (0x0B57, 0x0B57), (0x0BBE, 0x0BBE),
    (0x0BD7, 0x0BD7), (0x0CC2, 0x0CC2), (0x0CD5, 0x0CD6), (0x0D3E, 0x0D3E), (0x0D57, 0x0D57),
    (0x0DCF, 0x0DCF), (0x0DDF, 0x0DDF), (0x1B35, 0x1B35), (0x200C, 0x200C), (0x302E, 0x302F),
    (0xFF9E, 0xFF9F), (0x1D165, 0x1D165), (0x1D16E, 0x1D172), (0xE0020, 0xE007F),
    # Added by Unicode 16 (Rust >= 1.83 escapes them; Python's unicodedata may be older).
    (0x0CC0, 0x0CC0), (0x0CC7, 0x0CC8), (0x0CCA, 0x0CCB), (0x1715, 0x1715), (0x1734, 0x1734),
    (0x1B3B, 0x1B3B), (0x1B3D, 0x1B3D), (0x1B43, 0x1B44), (0x1BAA, 0x1BAA), (0x1BF2, 0x1BF3),
    (0xA953, 0xA953), (0xA9C0, 0xA9C0), (0x111C0, 0x111C0), (0x11235, 0x11235), (0x1133E, 0x1133E),
    (0x1134D, 0x1134D), (0x11357, 0x11357), (0x114B0, 0x114B0), (0x114BD, 0x114BD), (0x115AF, 0x115AF),
    (0x116B6, 0x116B6), (0x11930, 0x11930), (0x1193D, 0x1193D), (0x16FF0, 0x16FF1), (0x1D166, 0x1D166),
    (0x1D16D, 0x1D16D),
)
_NAMED_ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"'}


def _is_grapheme_extend(char: str) -> bool:
    if unicodedata.category(char) in ("Mn", "Me"):
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _OTHER_GRAPHEME_EXTEND)


def rust_debug_str(text: str) -> str:
    """`format!("{:?}", text)` for a Rust `&str`: quoted, with Rust's escapes."""
    out = ['"']
    for char in text:
        named = _NAMED_ESCAPES.get(char)
        if named is not None:
            out.append(named)
        elif " " <= char <= "~":  # printable ASCII: the common case
            out.append(char)
        elif _is_grapheme_extend(char) or not char.isprintable():
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def rust_debug_option(text: str | None) -> str:
    """`format!("{:?}", Option<String>)`: `Some("key")` or `None`."""
    return "None" if text is None else f"Some({rust_debug_str(text)})"


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def batch_id(session_id: str, source_key: str | None, now_ms: int, nonce: int) -> str:
    """`qwb:` + SHA-256 of `{session}:{source_key:?}:{now_ms}:{nonce}`; turnq's nonce is the enqueue_seq."""
    return "qwb:" + _sha256_hex(f"{session_id}:{rust_debug_option(source_key)}:{now_ms}:{nonce}")


def item_id(batch_id_: str, index: int) -> str:
    return f"{batch_id_}:item:{index}"


def claim_id(first_enqueue_seq: int, fencing_token: int) -> str:
    return f"qwc:{first_enqueue_seq}:{fencing_token}"


def lease_token(session_id: str, owner_id: str, claim_id_: str, now_ms: int) -> str:
    return _sha256_hex(f"{session_id}:{owner_id}:{claim_id_}:{now_ms}")


def command_source_key(kind: str, idempotency_key: str) -> str:
    return f"command:{kind}:{idempotency_key}"


def wake_source_key(process_id: str, sequence: int) -> str:
    return f"process:{process_id}:event:{sequence}:wake"


def fixed_idempotency_key(kind: str, session_id: str, reason: str, now_ms: int) -> str:
    """The idempotency key used when the clock is fixed (spec/cli.md, `--now`)."""
    return _sha256_hex(f"{kind}:{session_id}:{reason}:{now_ms}")[:16]
