"""turnq.ids: the deterministic identifiers of spec/wire.md (*Identifier formats*)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from conftest import NOW

from turnq import _unicode_data, ids

# (text, Rust's format!("{:?}", text))
DEBUG_TABLE = [
    ("host:abc", '"host:abc"'),
    ("", '""'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a\\b", '"a\\\\b"'),
    ("line\nbreak", '"line\\nbreak"'),
    ("cr\rtab\t", '"cr\\rtab\\t"'),
    ("nul\0", '"nul\\0"'),
    ("it's", '"it\'s"'),
    ("zero\u200bwidth", '"zero\\u{200b}width"'),
    ("e\u0301", '"e\\u{301}"'),  # combining acute accent (Grapheme_Extend)
    ("\u0301start", '"\\u{301}start"'),
    ("del\x7f", '"del\\u{7f}"'),
    ("\x01", '"\\u{1}"'),
    ("\x1b[0m", '"\\u{1b}[0m"'),
    ("\xa0", '"\\u{a0}"'),  # no-break space: a separator, not printable for Rust
    ("\xad", '"\\u{ad}"'),  # soft hyphen (Cf)
    ("\u2028", '"\\u{2028}"'),  # line separator (Zl)
    ("\u200d", '"\\u{200d}"'),  # zero-width joiner (Cf)
    ("\u200c", '"\\u{200c}"'),  # zero-width non-joiner (Other_Grapheme_Extend)
    ("\u2764\ufe0f", '"\u2764\\u{fe0f}"'),  # variation selector (Mn)
    ("\ue000", '"\\u{e000}"'),  # private use (Co)
    ("\u0cc0", '"\\u{cc0}"'),  # Kannada vowel sign II: Grapheme_Extend since Unicode 16
    ("\U0001d166", '"\\u{1d166}"'),  # musical combining stem: Grapheme_Extend since Unicode 16
    ("\U000e0041", '"\\u{e0041}"'),  # tag letter A
    ("日本語", '"日本語"'),
    ("😀", '"😀"'),
    ("café", '"café"'),
    ("Ωμέγα", '"Ωμέγα"'),
    ("~ !#$%&()*+,-./:;<=>?@[]^_`{|}", '"~ !#$%&()*+,-./:;<=>?@[]^_`{|}"'),
]


@pytest.mark.parametrize(("text", "expected"), DEBUG_TABLE, ids=[repr(t) for t, _ in DEBUG_TABLE])
def test_rust_debug_str(text: str, expected: str) -> None:
    assert ids.rust_debug_str(text) == expected


# The whole escaping table turnq pins: rust_debug_str of every code point of planes 0-1 and of
# the tag/variation-selector range (surrogates, which no Rust str holds, left out). Its digest is
# checked in, so every Python computes the same batch ids, with or without rustc. It changes only
# with turnq/_unicode_data.py (scripts/gen_unicode.py), and then every batch id of a non-ASCII
# source key whose escaping changed does too.
TABLE_CODE_POINTS = [*range(0xD800), *range(0xE000, 0x20000), *range(0xE0000, 0xE01F0)]
TABLE_SHA256 = "6a400cf83764c0d49acea27bd2586f0dc238aa72a4425e62f65b2c5db189ebc7"


def test_escaping_table_is_pinned_on_every_python() -> None:
    table = "\n".join(ids.rust_debug_str(chr(cp)) for cp in TABLE_CODE_POINTS)
    assert _unicode_data.UNICODE_VERSION == (16, 0, 0)
    assert hashlib.sha256(table.encode()).hexdigest() == TABLE_SHA256


def test_escaping_ignores_this_pythons_unicodedata() -> None:
    """Code points whose escaping Unicode 16 changed against older Pythons' databases."""
    assert ids.rust_debug_str("\U00011f41") == '"\\u{11f41}"'  # Kawi sign killer: Grapheme_Extend in 16
    assert ids.rust_debug_str("\u0cc0") == '"\\u{cc0}"'  # Other_Grapheme_Extend since 16
    assert ids.rust_debug_str("\U0001171e") == '"\U0001171e"'  # Mn in 14, Mc in 16
    assert ids.rust_debug_str("\U000105c0") == '"\U000105c0"'  # Todhri letter A: new in 16
    assert ids.rust_debug_str("\U0001e6c0") == '"\\u{1e6c0}"'  # Tai Yo: unassigned until 17


_RUST_ESCAPES = r"""
fn main() {
    let (major, minor, update) = std::char::UNICODE_VERSION;
    println!("{}.{}.{}", major, minor, update);
    for cp in (0u32..=0x1FFFF).chain(0xE0000..=0xE01EF) {
        if let Some(c) = char::from_u32(cp) {
            let s = c.to_string();
            if format!("{:?}", s) != format!("\"{}\"", s) {
                println!("{:x} {:?}", cp, s);
            }
        }
    }
}
"""
DATA = Path(__file__).parent / "data"


def _rustc_escapes(tmp_path: Path) -> tuple[tuple[int, ...], dict[int, str]]:
    """The installed rustc's Unicode version, and every code point its `{:?}` escapes."""
    source = tmp_path / "escapes.rs"
    source.write_text(_RUST_ESCAPES)
    binary = tmp_path / "escapes"
    subprocess.run(["rustc", "-O", str(source), "-o", str(binary)], check=True, capture_output=True, timeout=300)
    version, *lines = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.splitlines()
    escaped = {}
    for line in lines:
        code, _, debug = line.partition(" ")
        escaped[int(code, 16)] = debug
    return tuple(int(part) for part in version.split(".")), escaped


def _recorded_changes(version: tuple[int, ...]) -> set[int] | None:
    """The code points a newer Unicode escapes differently (tests/data, from scripts/gen_unicode.py)."""
    path = DATA / f"unicode-changes-{'.'.join(map(str, version))}.txt"
    if not path.exists():
        return None
    changed = set()
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            low, _, high = line.partition("..")
            changed.update(range(int(low, 16), int(high, 16) + 1))
    return changed


def _ranges(code_points: list[int]) -> str:
    spans: list[list[int]] = []
    for cp in sorted(code_points):
        if spans and spans[-1][1] == cp - 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    return ", ".join(f"U+{a:04X}" if a == b else f"U+{a:04X}..U+{b:04X}" for a, b in spans)


def _against_rustc(version: tuple[int, ...], rust: dict[int, str]) -> tuple[list[int], list[int]]:
    """The code points turnq escapes otherwise than rustc: (explained by rustc's other Unicode, not)."""
    differing = [cp for cp in TABLE_CODE_POINTS if ids.rust_debug_str(chr(cp)) != rust.get(cp, f'"{chr(cp)}"')]
    changed = set() if version == _unicode_data.UNICODE_VERSION else _recorded_changes(version)
    if changed is None:
        pytest.fail(f"rustc uses Unicode {version}, for which tests/data has no record of changes against "
                    f"the pinned {_unicode_data.UNICODE_VERSION} (make one with scripts/gen_unicode.py "
                    f"--changes); it escapes differently: {_ranges(differing) or 'nothing'}")
    return [cp for cp in differing if cp in changed], [cp for cp in differing if cp not in changed]


@pytest.mark.skipif(shutil.which("rustc") is None, reason="rustc is not installed: cannot ask Rust itself")
def test_rust_debug_str_agrees_with_rustc(tmp_path: Path) -> None:
    """Every code point of planes 0-1 and the tag/variation range, escaped or not as rustc's `{:?}` does.

    A rustc on another Unicode version than turnq's pinned one may differ exactly where that
    version changed a code point's escaping (recorded in tests/data/unicode-changes-X.txt):
    those are named in a warning; any other difference fails."""
    version, rust = _rustc_escapes(tmp_path)
    assert rust[0x200B] == '"\\u{200b}"'
    explained, unexplained = _against_rustc(version, rust)
    assert _ranges(unexplained) == ""
    if explained:
        warnings.warn(f"rustc uses Unicode {'.'.join(map(str, version))}, turnq pins "
                      f"{'.'.join(map(str, _unicode_data.UNICODE_VERSION))}: as that version changed, rustc "
                      f"escapes differently: {_ranges(explained)}", stacklevel=1)


def test_rustc_comparison_fails_on_what_no_unicode_change_explains() -> None:
    """The comparison itself, on a made-up rustc output: turnq's escapes, edited."""
    ours = {cp: ids.rust_debug_str(chr(cp)) for cp in TABLE_CODE_POINTS}
    rust = {cp: debug for cp, debug in ours.items() if debug != f'"{chr(cp)}"'}
    del rust[0x1E6C0]  # Unicode 17 assigned it (Tai Yo): a Unicode 17 rustc writes it as is
    rust[0xE9] = '"\\u{e9}"'  # a real mismatch: no Unicode ever escaped é
    assert _against_rustc((17, 0, 0), rust) == ([0x1E6C0], [0xE9])
    assert _against_rustc((16, 0, 0), rust) == ([], [0xE9, 0x1E6C0])
    with pytest.raises(pytest.fail.Exception, match="no record of changes"):
        _against_rustc((99, 0, 0), rust)


def test_rust_debug_option() -> None:
    assert ids.rust_debug_option(None) == "None"
    assert ids.rust_debug_option("host:abc") == 'Some("host:abc")'
    assert ids.rust_debug_option('a"b') == 'Some("a\\"b")'


def _qwb(preimage: str) -> str:
    return "qwb:" + hashlib.sha256(preimage.encode("utf-8")).hexdigest()


def test_batch_id_with_source_key() -> None:
    expected = _qwb('root:Some("host:abc"):1767225600000:3')
    assert ids.batch_id("root", "host:abc", NOW, 3) == expected
    assert re.fullmatch(r"qwb:[0-9a-f]{64}", expected)


def test_batch_id_without_source_key() -> None:
    assert ids.batch_id("root", None, NOW, 3) == _qwb("root:None:1767225600000:3")


def test_batch_id_escapes_source_key_as_rust_debug() -> None:
    # The literal preimage, as Rust's `{:?}` writes the key `a"b\n'c` + U+200B.
    assert ids.batch_id("s", "a\"b\n'c\u200b", 5, 0) == _qwb('s:Some("a\\"b\\n\'c\\u{200b}"):5:0')


def test_batch_id_depends_on_every_part() -> None:
    base = ids.batch_id("root", "k", NOW, 1)
    assert len({base, ids.batch_id("root2", "k", NOW, 1), ids.batch_id("root", "k2", NOW, 1),
                ids.batch_id("root", None, NOW, 1), ids.batch_id("root", "k", NOW + 1, 1),
                ids.batch_id("root", "k", NOW, 2)}) == 6


def test_item_id() -> None:
    assert ids.item_id("qwb:abc", 0) == "qwb:abc:item:0"
    assert ids.item_id("qwb:abc", 12) == "qwb:abc:item:12"


def test_claim_id() -> None:
    assert ids.claim_id(3, 1) == "qwc:3:1"
    assert ids.claim_id(17, 42) == "qwc:17:42"


def test_lease_token() -> None:
    expected = hashlib.sha256(b"root:worker-a:qwc:3:1:1767225600000").hexdigest()
    token = ids.lease_token("root", "worker-a", "qwc:3:1", NOW)
    assert token == expected
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert ids.lease_token("root", "worker-b", "qwc:3:1", NOW) != token


def test_lease_token_non_ascii_owner_hashed_as_utf8() -> None:
    expected = hashlib.sha256("root:wörker:qwc:1:1:0".encode()).hexdigest()
    assert ids.lease_token("root", "wörker", "qwc:1:1", 0) == expected


def test_command_source_key() -> None:
    assert ids.command_source_key("reset_session", "KEY") == "command:reset_session:KEY"
    assert ids.command_source_key("refresh_tool_surface", "k-1") == "command:refresh_tool_surface:k-1"


def test_wake_source_key() -> None:
    assert ids.wake_source_key("p1", 7) == "process:p1:event:7:wake"
    assert ids.wake_source_key("proc:x", 0) == "process:proc:x:event:0:wake"


def test_fixed_idempotency_key() -> None:
    expected = hashlib.sha256(b"reset_session:root:user asked:1767225600000").hexdigest()[:16]
    key = ids.fixed_idempotency_key("reset_session", "root", "user asked", NOW)
    assert key == expected
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert ids.fixed_idempotency_key("refresh_tool_surface", "root", "user asked", NOW) != key
    assert ids.fixed_idempotency_key("reset_session", "root", "user asked", NOW + 1) != key
