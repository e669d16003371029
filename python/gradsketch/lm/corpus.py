"""A real text corpus from this machine's Debian packages, for the LM suite.

Why: the seed methods (SELECT, LESS, In-Run Data Shapley, Density sampling, PASER, GradEx) are
language-model methods about *which documents* a model learnt from. They need documents of clearly
different kinds, with stable ids and source labels, that every machine can rebuild without a
download. Debian ships such text as package data, so the corpus is read from installed packages
(:data:`CORPUS_PACKAGES`; ``Tools/setup.sh`` installs them):

=============  ==========================================================  ======================
source         what                                                        read from
=============  ==========================================================  ======================
fortunes       short quips and quotations, one entry per document          fortunes, fortunes-min
poems          song lyrics and poems (the ``songs-poems`` fortune file)    fortunes
manpages       C API manual pages, sections 2 and 3, groff macros stripped manpages-dev
python-docs    the Python documentation's reST sources, markup removed     python3-doc
c-headers      C headers of glibc and the Linux UAPI, licence blocks cut   libc6-dev, linux-libc-dev
changelogs     Debian changelog entries of every installed package         (every package)
=============  ==========================================================  ======================

Every text is split into parts of at most ``max_bytes`` UTF-8 bytes on paragraph, then line, then
word boundaries (never inside a character, see :func:`split_text`); parts shorter than
``min_bytes`` are dropped, and exact duplicate texts inside a source are kept once (first id wins).
Ids are ``"<source>/<key>#<part>"``, where the key comes from the package path (a man page
``man3/memcpy.3``, a fortune ``computers/12``, a changelog entry ``bash/5.2.15-2``), so the same
package versions give the same ids, texts and order on every machine.

The changelogs source depends on which packages are installed, so it is the one source whose
*set* of documents can differ between machines with different package sets; the ids of the
packages they share are the same.

:func:`instruction_documents` builds instruction-like documents (``Instruction: ...`` /
``Response: ...``) from the man pages' NAME/DESCRIPTION sections, the Python FAQ and the Python
library reference, for PASER.

Size and cost (Debian 12 package versions, 2 shared cores, CPU seconds of one process):

- every document at 64..512 bytes: 83,744 documents, 29 MB (fortunes 11,072, poems 884,
  manpages 9,836, python-docs 23,590, c-headers 19,174, changelogs 19,188), 12.5 s CPU;
  poems is the small source: 884 at 512 bytes, 1,530 at 193 bytes, 2,104 at 129 bytes;
- ``per_source=200``: 2.1 s CPU; ``per_source=1500`` at 64..193 bytes: 14 s CPU;
- ``instruction_documents()``: 7,182 (man 891, python-faq 176, python-api 6,115), 2.7 s CPU.

``python -m gradsketch.lm.corpus OUT.jsonl [--per-source N]`` writes the corpus as JSONL.
Nothing here imports torch or the native library.
"""

from __future__ import annotations

import functools
import glob
import gzip
import hashlib
import json
import os
import re
import textwrap
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

__all__ = [
    "CORPUS_PACKAGES",
    "SOURCES",
    "INSTRUCTIONS",
    "INSTRUCTION_KINDS",
    "Document",
    "CorpusError",
    "build_corpus",
    "instruction_documents",
    "split_text",
    "clean_groff",
    "clean_rst",
    "write_jsonl",
    "package_versions",
    "read_jsonl",
]

#: Debian packages the corpus reads; ``Tools/setup.sh`` installs them.
CORPUS_PACKAGES: tuple[str, ...] = (
    "fortunes",
    "fortunes-min",
    "manpages-dev",
    "python3-doc",
    "libc6-dev",
    "linux-libc-dev",
)

#: Source names, in the fixed order of :func:`build_corpus`'s output.
SOURCES: tuple[str, ...] = ("fortunes", "poems", "manpages", "python-docs", "c-headers", "changelogs")

#: Source label of :func:`instruction_documents`.
INSTRUCTIONS = "instructions"
#: Kinds of instruction documents, in output order (see :func:`instruction_documents`).
INSTRUCTION_KINDS: tuple[str, ...] = ("man", "python-faq", "python-api")


class CorpusError(Exception):
    """The corpus cannot be built: a package's files are missing, or arguments are invalid."""


@dataclass(frozen=True)
class Document:
    """One training/evaluation document.

    Attributes:
        id: ``"<source>/<key>#<part>"``, stable across machines with the same package versions.
        source: one of :data:`SOURCES`, or ``"instructions"``.
        text: cleaned UTF-8 text of ``min_bytes..max_bytes`` bytes.
    """

    id: str
    source: str
    text: str


# --------------------------------------------------------------------------------------------
# Splitting


_SEPARATORS = ("\n\n", "\n", " ")

#: A unit of a source: (key, loader); the loader reads one file and yields (key, cleaned text).
_Unit = tuple[str, Callable[[], Iterable[tuple[str, str]]]]


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def split_text(text: str, max_bytes: int) -> list[str]:
    """Split ``text`` into contiguous pieces of at most ``max_bytes`` UTF-8 bytes each.

    ``"".join(split_text(text, n)) == text`` always holds: no byte is lost or added, so the caller
    decides what to strip. Cuts are made after a paragraph break (blank line) where possible, else
    after a newline, else after a space, and only if a single word is longer than ``max_bytes``
    between two characters (a character is never cut). Pieces are packed greedily, so a piece is
    as long as the boundaries allow.
    """
    if max_bytes < 4:
        raise CorpusError(f"max_bytes must be at least 4 (one UTF-8 character), got {max_bytes}")
    return _split(text, max_bytes, 0)


def _split(text: str, max_bytes: int, level: int) -> list[str]:
    if _nbytes(text) <= max_bytes:
        return [text] if text else []
    if level == len(_SEPARATORS):
        return _split_chars(text, max_bytes)
    separator = _SEPARATORS[level]
    raw = text.split(separator)
    # Keep the separator on the piece before it, so the pieces concatenate to the text.
    pieces = [piece + separator for piece in raw[:-1]] + [raw[-1]]
    out: list[str] = []
    current = ""
    current_bytes = 0
    for piece in pieces:
        if not piece:
            continue
        size = _nbytes(piece)
        if size > max_bytes:
            if current:
                out.append(current)
                current, current_bytes = "", 0
            out.extend(_split(piece, max_bytes, level + 1))
        elif current_bytes + size > max_bytes:
            out.append(current)
            current, current_bytes = piece, size
        else:
            current += piece
            current_bytes += size
    if current:
        out.append(current)
    return out


def _split_chars(text: str, max_bytes: int) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = _nbytes(char)
        if size + width > max_bytes:
            out.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current:
        out.append("".join(current))
    return out


def _documents(source: str, key: str, text: str, min_bytes: int, max_bytes: int) -> list[Document]:
    """The parts of one cleaned text as documents ``<source>/<key>#<part>`` (short parts dropped).

    The part number counts every piece of the split, dropped ones included, so an id does not
    shift when a neighbouring piece falls under ``min_bytes``.
    """
    out = []
    for index, piece in enumerate(split_text(text, max_bytes)):
        part = textwrap.dedent(piece.strip("\n")).strip()
        if _nbytes(part) >= min_bytes:
            out.append(Document(f"{source}/{key}#{index}", source, part))
    return out


def _normalise(text: str) -> str:
    """Tabs to spaces, trailing spaces cut, at most one blank line in a row, no outer blank lines."""
    lines = [line.expandtabs(4).rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


# --------------------------------------------------------------------------------------------
# Files


def _read_text(path: str) -> str:
    """A file's text (gzip-decompressed when it ends in .gz); bytes that are not UTF-8 are replaced."""
    if path.endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    else:
        with open(path, "rb") as handle:
            data = handle.read()
    return data.decode("utf-8", errors="replace")


def _package_files(root: str, package: str) -> list[str]:
    """Paths (under ``root``) that dpkg lists for ``package``; CorpusError if it is not installed."""
    info = os.path.join(root, "var/lib/dpkg/info")
    lists = sorted(glob.glob(os.path.join(info, f"{package}.list")) + glob.glob(os.path.join(info, f"{package}:*.list")))
    if not lists:
        raise CorpusError(
            f"package {package!r} is not installed (no {package}.list in {info}); "
            f"install the corpus packages with: apt-get install {' '.join(CORPUS_PACKAGES)}"
        )
    paths: set[str] = set()
    for listing in lists:
        with open(listing, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    paths.add(os.path.join(root, line.lstrip("/")))
    return sorted(paths)


def _require_dir(path: str, package: str) -> str:
    if not os.path.isdir(path):
        raise CorpusError(
            f"expected the directory {path} from package {package!r}, found nothing there; "
            f"install the corpus packages with: apt-get install {' '.join(CORPUS_PACKAGES)}"
        )
    return path


# --------------------------------------------------------------------------------------------
# fortunes and poems

_FORTUNE_DIR = "usr/share/games/fortunes"
_POEM_FILES = ("songs-poems",)
_FORTUNE_SKIP = ("ascii-art", "art")  # drawings, not text


def _fortune_entries(path: str) -> list[str]:
    text = _read_text(path)
    entries = re.split(r"^%[ \t]*$", text, flags=re.M)
    return [_clean_fortune(entry) for entry in entries]


def _clean_fortune(entry: str) -> str:
    lines = []
    for line in _normalise(entry).split("\n"):
        stripped = line.strip()
        # Attributions are indented with tabs ("\t\t-- Mark Twain"): keep them flush left.
        lines.append(stripped if stripped.startswith("--") else line)
    return "\n".join(lines).strip("\n")


def _fortune_categories(root: str) -> list[str]:
    directory = _require_dir(os.path.join(root, _FORTUNE_DIR), "fortunes")
    names = []
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if "." in name or not os.path.isfile(full):
            continue  # index files (.dat) and the .u8 symlinks
        names.append(name)
    missing = [name for name in _POEM_FILES if name not in names]
    if missing:
        raise CorpusError(f"expected the fortune file(s) {missing} in {directory} (package 'fortunes'), found none")
    return names


def _fortune_texts(path: str, category: str) -> Iterator[tuple[str, str]]:
    for index, entry in enumerate(_fortune_entries(path)):
        if entry:
            yield f"{category}/{index}", entry


def _fortune_units(root: str, poems: bool) -> list[_Unit]:
    directory = os.path.join(root, _FORTUNE_DIR)
    return [
        (category, functools.partial(_fortune_texts, os.path.join(directory, category), category))
        for category in _fortune_categories(root)
        if (category in _POEM_FILES) == poems and category not in _FORTUNE_SKIP
    ]


# --------------------------------------------------------------------------------------------
# man pages (groff)

_GROFF_NAMED = {
    "em": "--", "en": "-", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"',
    "oq": "'", "cq": "'", "bu": "*", "co": "(C)", "rg": "(R)", "tm": "(TM)", "ti": "~", "ha": "^",
    "rs": "\\", "sl": "/", "lh": "<=", "rh": "=>", "<=": "<=", ">=": ">=", "!=": "!=", "==": "==",
    "mu": "x", "di": "/", "+-": "+-", "->": "->", "<-": "<-", "ga": "`", "aa": "'", "ua": "^",
    "da": "v", "pl": "+", "eq": "=", "fm": "'", "de": " degrees", "sc": "S", "ps": "P", "Fo": "<<",
    "Fc": ">>", "fo": "<", "fc": ">", "r!": "!", "r?": "?", "ss": "ss", "a\"": '"', "bv": "|",
    "ba": "|", "or": "|", "ct": "c", "Po": "L", "Eu": "EUR", "eu": "EUR", "ye": "Y", "ul": "_",
    "ru": "_", "br": "|", "ci": "O", "sq": "#", "OK": "ok", "lA": "<=", "rA": "=>", "hA": "<=>",
    "tno": "~", "shc": "-", "nbsp": " ", "lB": "[", "rB": "]", "lC": "{", "rC": "}", "la": "<",
    "ra": ">",
}


def _groff_accented() -> dict[str, str]:
    """groff's accented-letter names: ``e'`` is é, ``u"`` is ü, ``n~`` is ñ, ``c,`` is ç, ..."""
    marks = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303", ",": "\u0327"}
    letters = {"'": "aeiouyAEIOUY", "`": "aeiouAEIOU", '"': "aeiouyAEIOU", "^": "aeiouAEIOU", "~": "anoANO", ",": "cC"}
    return {
        letter + mark: unicodedata.normalize("NFC", letter + marks[mark])
        for mark, group in letters.items()
        for letter in group
    }


_GROFF_NAMED.update(_groff_accented())
_GROFF_STRINGS = {"lq": '"', "rq": '"', "R": "(R)", "Tm": "(TM)", "Lq": '"', "Rq": '"'}

_GROFF_BREAK = {"PP", "P", "LP", "sp", "br", "HP"}
# Font macros: the alternating ones join their arguments without spaces.
_GROFF_JOIN_FONTS = {"BR", "RB", "BI", "IB", "IR", "RI"}
_GROFF_SPACE_FONTS = {"B", "I", "SM", "SB", "R"}


_GROFF_SIMPLE = {
    "-": "-", "e": "\\", "&": "", "%": "", "~": " ", " ": " ", "0": " ", "|": "", "^": "", "c": "",
    ":": "", "/": "", ",": "", "t": " ", "'": "'", "`": "`", ".": ".", '"': "",
}
_GROFF_ESCAPE = re.compile(
    r"\\\\"                                             # a literal backslash
    r"|\\f(?:\[[^\]]*\]|\(..|.)"                          # font change
    r"|\\s[-+]?(?:\d|\(\d\d|\[\d+\])"                      # size change
    r"|\\\*(?:\[(?P<sb>[^\]]*)\]|\((?P<sp>..)|(?P<s1>.))"     # predefined string
    r"|\\\((?P<np>..)"                                      # named character \(xx
    r"|\\\[(?P<nb>[^\]]*)\]"                                 # named character \[xxx]
    r"|\\[nk](?:\[[^\]]*\]|\(..|.)"                       # register interpolation, mark
    r"|\\[hvwlLxoDNbZXYMm](?:'[^']*'|\[[^\]]*\]|\(..|.)"  # motions, drawing, colours
    r"|\\(?P<other>.)"                                       # anything else: the character itself
)


def _groff_replacement(match: re.Match[str]) -> str:
    text = match.group(0)
    if text == "\\\\":
        return "\\"
    groups = match.groupdict()
    string = groups["sb"] or groups["sp"] or groups["s1"]
    if string is not None:
        return _GROFF_STRINGS.get(string, "")
    if groups["np"] is not None:
        return _GROFF_NAMED.get(groups["np"], "")
    if groups["nb"] is not None:
        return _GROFF_NAMED.get(groups["nb"], _groff_unicode(groups["nb"]))
    other = groups["other"]
    if other is not None:
        return _GROFF_SIMPLE.get(other, other)
    return ""


def _groff_escapes(text: str) -> str:
    """Inline groff escapes to plain text: fonts and sizes dropped, named characters mapped."""
    return _GROFF_ESCAPE.sub(_groff_replacement, text) if "\\" in text else text


def _groff_unicode(name: str) -> str:
    match = re.fullmatch(r"u([0-9A-Fa-f]{4,6})", name)
    return chr(int(match.group(1), 16)) if match else ""


def _groff_args(rest: str) -> list[str]:
    """A request line's arguments: whitespace-separated, double quotes group ("" is a quote)."""
    args: list[str] = []
    for match in re.finditer(r'"((?:[^"]|"")*)"?|(\S+)', rest):
        if match.group(2) is not None:
            args.append(match.group(2))
        else:
            args.append(match.group(1).replace('""', '"'))
    return args


def clean_groff(source: str) -> str:
    """Man page groff source to plain text, without running groff.

    Section headings become their own lines (``NAME``, ``DESCRIPTION``), filled text lines of a
    paragraph are joined with spaces, no-fill blocks (``.nf``/``.EX``, synopses, examples) keep
    their lines, tables keep their cells separated by `` | ``, and every macro and escape is
    removed. Why by hand: ``man -P cat`` took 1.75 s for 5 pages here (0.35 s a page, minutes for
    the ~900 pages); this takes ~5 ms a page.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    fill = True
    in_table_format = False
    in_ignore = False
    tag_pending = False  # after .TP the next line is a tag: a paragraph of its own

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current) if fill else "\n".join(current))
            current.clear()

    lines = source.replace("\r\n", "\n").split("\n")
    for line in lines:
        if in_ignore:
            if line.startswith(".."):
                in_ignore = False
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"', ".\\#")) or line.strip() in (".", "'"):
            continue
        if in_table_format:
            # tbl's option and format lines end with "." (the last format line).
            if line.rstrip().endswith("."):
                in_table_format = False
            continue
        if line.startswith((".", "'")):
            match = re.match(r"[.'][ \t]*(\S*)[ \t]*(.*)", line)
            assert match is not None
            request, rest = match.group(1), match.group(2)
            if request in ("ig",):
                in_ignore = True
                continue
            if request == "TS":
                flush()
                in_table_format = True
                fill = False
                continue
            if request == "TE":
                flush()
                fill = True
                continue
            if request in ("nf", "EX"):
                flush()
                fill = False
                continue
            if request in ("fi", "EE"):
                flush()
                fill = True
                continue
            if request in ("SH", "SS"):
                flush()
                heading = " ".join(_groff_args(_groff_escapes(rest)))
                if heading:
                    paragraphs.append(heading)
                continue
            if request in _GROFF_BREAK:
                flush()
                continue
            if request in ("TP", "TQ"):
                flush()
                tag_pending = True
                continue
            if request == "IP":
                flush()
                args = _groff_args(rest)
                tag = _groff_escapes(args[0]).strip() if args else ""
                if tag:
                    current.append(tag)
                    if len(tag) > 4:
                        flush()  # a word tag ("EINVAL") stands alone; a bullet or "1." leads its text
                continue
            if request in _GROFF_JOIN_FONTS or request in _GROFF_SPACE_FONTS:
                joiner = "" if request in _GROFF_JOIN_FONTS else " "
                current.append(_groff_escapes(joiner.join(_groff_args(rest))))
                if tag_pending:
                    flush()
                    tag_pending = False
                continue
            continue  # any other request (.TH, .RS, .in, .UR, ...) produces no text
        text = re.sub(r'(?<!\\)\\".*$', "", line)  # a trailing comment
        if not fill:
            text = text.replace("T{", "").replace("T}", "").replace("\t", " | ")
        text = _groff_escapes(text)
        if fill:
            text = text.strip()
            if not text:
                flush()
                continue
        current.append(text.rstrip())
        if tag_pending:
            flush()
            tag_pending = False
    flush()
    text = "\n\n".join(paragraph.strip("\n") for paragraph in paragraphs if paragraph.strip())
    return _normalise(text)


def _man_pages(root: str) -> list[tuple[str, str]]:
    """(key, path) of manpages-dev's section 2 and 3 pages, ``.so`` redirects skipped later."""
    out = []
    for path in _package_files(root, "manpages-dev"):
        match = re.search(r"/usr/share/man/(man[23])/([^/]+?)(\.gz)?$", path)
        if match and os.path.isfile(path) and not os.path.islink(path):
            out.append((f"{match.group(1)}/{match.group(2)}", path))
    if not out:
        raise CorpusError("package 'manpages-dev' lists no section 2/3 man pages under /usr/share/man")
    return out


def _man_texts(path: str, key: str) -> Iterator[tuple[str, str]]:
    source = _read_text(path)
    if re.match(r"\s*\.so\s", source) and source.count("\n") < 3:
        return  # an alias page: ".so man3/other.3"
    text = clean_groff(source)
    if text:
        yield key, text


def _man_units(root: str) -> list[_Unit]:
    return [(key, functools.partial(_man_texts, path, key)) for key, path in _man_pages(root)]


# --------------------------------------------------------------------------------------------
# Python documentation (reST)

_RST_DIR = "usr/share/doc/python3-doc/html/_sources"
_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")
_RST_TABLE = re.compile(r"^\s*[+|]?[-=+|: ]*[+|]\s*$|^\s*\+[-=+]+\+\s*$|^\s*[=\- ]{3,}\s*$")
# Directives whose body is not prose worth keeping.
_RST_DROP_BLOCK = {
    "index", "toctree", "only", "raw", "include", "literalinclude", "image", "figure", "highlight",
    "sectionauthor", "moduleauthor", "testsetup", "testcleanup", "productionlist", "csv-table",
    "audit-event", "audit-event-table", "opcodesummary", "availability", "impl-detail", "c:namespace",
    "currentmodule", "module", "default-role", "tabularcolumns", "rubric", "contents", "role",
    "program", "cmdoption-list", "highlightlang", "sidebar", "seealso", "topic", "autosummary",
    "limited-api-list", "deprecated-removed", "miscnews", "include-file", "pypi-list",
}


def _rst_inline(text: str) -> str:
    """Inline reST markup to plain text: roles, literals, emphasis, links, substitutions."""
    # :role:`title <target>` -> title ; :role:`~a.b.c` -> c ; :role:`!x` -> x
    def role(match: re.Match[str]) -> str:
        body = match.group(1)
        titled = re.fullmatch(r"(.*?)\s*<[^<>]*>", body, flags=re.S)
        if titled and titled.group(1):
            return titled.group(1)
        body = body.lstrip("!")
        if body.startswith("~"):
            body = body[1:].rsplit(".", 1)[-1]
        return body

    text = re.sub(r":[a-zA-Z0-9_.+-]+(?::[a-zA-Z0-9_.+-]+)*:`([^`]*)`", role, text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"`([^`<]*?)\s*<[^`>]*>`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`__?", r"\1", text)
    text = re.sub(r"`([^`]+)`", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|([\w .-]+)\|_?", r"\1", text)
    text = re.sub(r"\s*\[(#\w*|\d+|\*)\]_", "", text)
    text = text.replace("\\ ", "").replace("\\*", "*").replace("\\`", "`")
    return text


def clean_rst(source: str) -> str:
    """reST source to plain text.

    Section underlines and overlines, comments, labels, table borders and non-prose directives
    (``index``, ``toctree``, ...) are removed with their indented bodies; description directives
    (``.. function:: open(file)``) keep their signature as a line; admonitions (``.. note::``)
    become ``Note:``; ``::`` literal markers become ``:``; inline roles and literals keep their text.
    """
    out: list[str] = []
    lines = source.replace("\r\n", "\n").split("\n")
    skip_indent: int | None = None  # drop lines indented deeper than this (a dropped block's body)
    option_indent: int | None = None  # drop ":option: value" lines right after a directive
    for raw in lines:
        line = raw.expandtabs(8).rstrip()
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None:
            if not line or indent > skip_indent:
                continue
            skip_indent = None
        if option_indent is not None:
            if line and indent > option_indent and re.match(r"\s*:[\w -]+:(\s|$)", line):
                continue
            option_indent = None
        stripped = line.strip()
        if _RST_UNDERLINE.match(stripped) or (stripped and _RST_TABLE.match(line) and set(stripped) <= set("+-=|: ")):
            continue
        directive = re.match(r"\s*\.\.\s+([\w:.-]+)::\s*(.*)$", line)
        if directive:
            name, argument = directive.group(1), directive.group(2)
            base = name.split(":")[-1]
            if name in _RST_DROP_BLOCK or base in _RST_DROP_BLOCK:
                skip_indent = indent
                continue
            option_indent = indent
            if base in ("note", "warning", "tip", "important", "caution", "attention", "hint", "danger", "error", "admonition"):
                out.append(" " * indent + base.capitalize() + ":" + (" " + _rst_inline(argument) if argument else ""))
            elif base in ("versionadded", "versionchanged", "deprecated"):
                label = {"versionadded": "New in version", "versionchanged": "Changed in version", "deprecated": "Deprecated since version"}[base]
                out.append(" " * indent + f"{label} {_rst_inline(argument)}".rstrip())
            elif base in ("code-block", "sourcecode", "code", "doctest", "testcode", "testoutput"):
                out.append("")
            elif argument:
                out.append(" " * indent + _rst_inline(argument))
            continue
        if re.match(r"\s*\.\.(\s|$)", line):
            # a comment, a label (".. _foo:"), a substitution definition or a footnote: drop its block
            footnote = re.match(r"\s*\.\.\s+\[[^\]]+\]\s+(.*)$", line)
            if footnote:
                out.append(" " * indent + _rst_inline(footnote.group(1)))
                continue
            skip_indent = indent
            continue
        if stripped == "::":
            continue
        if line.endswith(" ::"):
            line = line[:-3]  # "text. ::" marks a literal block and shows no colon
        elif line.endswith("::"):
            line = line[:-1]  # "text::" shows as "text:"
        out.append(line)
    # Inline markup may span lines (":term:`bytes-like\n<bytes-like object>`") but not paragraphs.
    text = "\n\n".join(_rst_inline(paragraph) for paragraph in "\n".join(out).split("\n\n"))
    return _normalise(text)


def _python_doc_units(root: str) -> list[_Unit]:
    directory = _require_dir(os.path.join(root, _RST_DIR), "python3-doc")
    paths = sorted(glob.glob(os.path.join(directory, "**", "*.rst.txt"), recursive=True))
    if not paths:
        raise CorpusError(f"expected *.rst.txt files under {directory} (package 'python3-doc'), found none")
    units: list[_Unit] = []
    for path in paths:
        key = os.path.relpath(path, directory)[: -len(".rst.txt")]
        if key.startswith("whatsnew/changelog"):
            continue  # the NEWS file: a long list of issue numbers, not documentation prose
        units.append((key, functools.partial(_rst_texts, path, key)))
    return units


def _rst_texts(path: str, key: str) -> Iterator[tuple[str, str]]:
    text = clean_rst(_read_text(path))
    if text:
        yield key, text


# --------------------------------------------------------------------------------------------
# C headers

_HEADER_PACKAGES = ("libc6-dev", "linux-libc-dev")


_LICENCE_COMMENT = re.compile(r"/\*(?:(?!\*/).)*?(?:free software|GNU (?:Lesser )?General Public|Copyright)(?:(?!\*/).)*\*/[ \t]*\n?", re.S | re.I)


def _clean_header(source: str) -> str:
    """A header without licence comments (leading or anywhere); blank-line runs collapsed."""
    text = source.lstrip()
    # Leading comments ("/* Copyright ... GNU Lesser General Public License ... */", or "// SPDX") are boilerplate.
    while True:
        block = re.match(r"/\*.*?\*/\s*", text, flags=re.S)
        if block and re.search(r"copyright|licen[cs]e|SPDX", block.group(0), flags=re.I):
            text = text[block.end():]
            continue
        line = re.match(r"//[^\n]*(SPDX|[Cc]opyright|[Ll]icen[cs]e)[^\n]*\n\s*", text)
        if line:
            text = text[line.end():]
            continue
        break
    return _normalise(_LICENCE_COMMENT.sub("", text))


def _header_units(root: str) -> list[_Unit]:
    include = os.path.join(root, "usr/include") + os.sep
    seen: set[str] = set()
    entries = []
    for package in _HEADER_PACKAGES:
        for path in _package_files(root, package):
            if path.endswith(".h") and path.startswith(include) and os.path.isfile(path) and not os.path.islink(path):
                key = path[len(include):]
                if key not in seen:
                    seen.add(key)
                    entries.append((key, path))
    return [(key, functools.partial(_header_texts, path, key)) for key, path in sorted(entries)]


def _header_texts(path: str, key: str) -> Iterator[tuple[str, str]]:
    text = _clean_header(_read_text(path))
    if text:
        yield key, text


# --------------------------------------------------------------------------------------------
# Debian changelogs

_CHANGELOG_HEAD = re.compile(r"^(\S+) \(([^()\s]+)\)[^\n]*;[^\n]*$", flags=re.M)


def _changelog_paths(root: str) -> list[tuple[str, str]]:
    """(package, path) of every installed package's changelog.Debian.gz, symlinked duplicates once."""
    doc = _require_dir(os.path.join(root, "usr/share/doc"), "base-files")
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(glob.glob(os.path.join(doc, "*", "changelog.Debian.gz"))):
        real = os.path.realpath(path)
        package = os.path.basename(os.path.dirname(real))
        found.setdefault(real, (package, real))
    if not found:
        raise CorpusError(f"expected */changelog.Debian.gz under {doc}, found none")
    return sorted(found.values())


def _clean_changelog_entry(entry: str) -> str:
    """An entry without e-mail addresses (the trailer keeps the maintainer's name and the date)."""
    entry = re.sub(r"^ -- (.*?)\s*<[^<>\s]+@[^<>\s]+>\s*", r" -- \1, ", entry, flags=re.M)
    entry = re.sub(r"[ \t]*<?\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+>?", "", entry)
    return _normalise(entry)


def _changelog_units(root: str) -> list[_Unit]:
    return [(package, functools.partial(_changelog_texts, path, package)) for package, path in _changelog_paths(root)]


def _changelog_texts(path: str, package: str) -> Iterator[tuple[str, str]]:
    text = _read_text(path)
    heads = list(_CHANGELOG_HEAD.finditer(text))
    seen: set[str] = set()
    for index, head in enumerate(heads):
        end = heads[index + 1].start() if index + 1 < len(heads) else len(text)
        key = f"{package}/{head.group(2)}"
        if key in seen:
            continue
        seen.add(key)
        entry = _clean_changelog_entry(text[head.start(): end])
        # Old entries end with Emacs "Local variables:" blocks: drop them.
        entry = re.split(r"\n\s*Local variables:", entry, maxsplit=1)[0].strip()
        if entry:
            yield key, entry


# --------------------------------------------------------------------------------------------
# The corpus

# Per source: its units (one file each, in key order) and whether a per_source cap may read only
# some of them (cheap sources are always read whole, so their spread is over every document).
_UNIT_READERS: dict[str, tuple[Callable[[str], list[_Unit]], bool]] = {
    "fortunes": (lambda root: _fortune_units(root, poems=False), False),
    "poems": (lambda root: _fortune_units(root, poems=True), False),
    "manpages": (_man_units, True),
    "python-docs": (_python_doc_units, True),
    "c-headers": (_header_units, True),
    "changelogs": (_changelog_units, True),
}

#: With a per_source cap, expensive sources read files (in hash-of-key order) until they have this
#: many times the cap in candidate documents, then take the cap by hash of document id.
CANDIDATE_FACTOR = 8
#: ... and at least this share of the cap in files, so a small max_bytes (many parts per file) still
#: spreads the cap over many files.
MIN_UNITS_SHARE = 0.5


def _spread_key(document_id: str) -> bytes:
    return hashlib.sha256(document_id.encode("utf-8")).digest()


def _check_bounds(min_bytes: int, max_bytes: int) -> None:
    if min_bytes < 1 or max_bytes < 4 or min_bytes > max_bytes:
        raise CorpusError(f"expected 1 <= min_bytes <= max_bytes and max_bytes >= 4, got min_bytes={min_bytes}, max_bytes={max_bytes}")


def _source_documents(source: str, root: str, min_bytes: int, max_bytes: int, per_source: int | None) -> list[Document]:
    """The documents of one source in key order, exact duplicate texts kept once, at most per_source.

    Without a cap every file is read. With a cap, cheap sources are still read whole; expensive ones
    read files in the order of a hash of their key (a spread over the whole source, not its first
    files) until ``CANDIDATE_FACTOR * per_source`` candidate documents from at least
    ``MIN_UNITS_SHARE * per_source`` files are in hand. Either way the
    cap then keeps the documents with the smallest hash of their id, in source order.
    """
    list_units, may_sample = _UNIT_READERS[source]
    return _collect(list_units(root), lambda key, text: _documents(source, key, text, min_bytes, max_bytes), per_source, may_sample)


def _collect(
    units: list[_Unit], to_documents: Callable[[str, str], list[Document]], cap: int | None, may_sample: bool
) -> list[Document]:
    """Documents of ``units`` in unit order, duplicates once, at most ``cap`` (see _source_documents)."""
    read: dict[int, list[Document]] = {}

    def documents_of(unit: _Unit) -> list[Document]:
        return [document for key, text in unit[1]() for document in to_documents(key, text)]

    if cap is not None and may_sample:
        candidates = 0
        for i in sorted(range(len(units)), key=lambda i: _spread_key(units[i][0])):
            if candidates >= CANDIDATE_FACTOR * cap and len(read) >= MIN_UNITS_SHARE * cap:
                break
            read[i] = documents_of(units[i])
            candidates += len(read[i])
    else:
        read = {i: documents_of(unit) for i, unit in enumerate(units)}
    documents: list[Document] = []
    texts: set[str] = set()
    for i in sorted(read):
        for document in read[i]:
            if document.text not in texts:
                texts.add(document.text)
                documents.append(document)
    return _take_spread(documents, cap)


def _take_spread(documents: list[Document], count: int | None) -> list[Document]:
    """``count`` documents chosen by a hash of their id (a spread over the whole list), in list order."""
    if count is None or count >= len(documents):
        return documents
    chosen = set(sorted(range(len(documents)), key=lambda i: _spread_key(documents[i].id))[:count])
    return [document for i, document in enumerate(documents) if i in chosen]


def build_corpus(
    *,
    per_source: int | None = None,
    min_bytes: int = 64,
    max_bytes: int = 512,
    sources: Sequence[str] | None = None,
    root: str = "/",
) -> list[Document]:
    """The corpus: documents of every source, sources in :data:`SOURCES` order.

    Args:
        per_source: at most this many documents per source, chosen by a hash of the id, so the
            choice is spread over the whole source and the same on every call; None keeps all.
            A source with fewer documents gives all it has.
        min_bytes, max_bytes: bounds of a document's UTF-8 length.
        sources: a subset of :data:`SOURCES` (kept in :data:`SOURCES` order); None for all.
        root: the file-system root the packages are read from (tests point it at a fake tree).

    Raises:
        CorpusError: an unknown source, invalid bounds, or a package's files missing under root
            (the message names the package and the path).
    """
    _check_bounds(min_bytes, max_bytes)
    if per_source is not None and per_source < 0:
        raise CorpusError(f"per_source must be >= 0 or None, got {per_source}")
    wanted = list(SOURCES) if sources is None else list(sources)
    unknown = [name for name in wanted if name not in SOURCES]
    if unknown:
        raise CorpusError(f"unknown source(s) {unknown}; expected names from {list(SOURCES)}")
    out: list[Document] = []
    for source in SOURCES:
        if source in wanted:
            out.extend(_source_documents(source, root, min_bytes, max_bytes, per_source))
    return out


# --------------------------------------------------------------------------------------------
# Instructions (for PASER)


def _man_sections(text: str) -> dict[str, str]:
    """Sections of a cleaned man page (``NAME``, ``DESCRIPTION``, ...) by heading."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for paragraph in text.split("\n\n"):
        if re.fullmatch(r"[A-Z][A-Z0-9 /_-]*", paragraph.strip()):
            current = paragraph.strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(paragraph)
    return {name: "\n\n".join(parts) for name, parts in sections.items()}


def _fit(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` within max_bytes that ends at whitespace (or the whole text)."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text.rstrip()
    head = data[: max_bytes + 1].decode("utf-8", errors="ignore")  # a cut character is dropped whole
    cut = max(head.rfind(" "), head.rfind("\n"))
    return (head[:cut] if cut > 0 else head[:-1]).rstrip()


def _man_instruction_units(root: str, max_bytes: int) -> list[_Unit]:
    return [(f"man/{key}", functools.partial(_man_instruction, path, key, max_bytes)) for key, path in _man_pages(root)]


def _man_instruction(path: str, key: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    """'What does `NAME` do?' answered by the page's NAME line and first DESCRIPTION paragraph."""
    source = _read_text(path)
    if not re.match(r"\s*\.so\s", source):
        sections = _man_sections(clean_groff(source))
        name_line = " ".join(sections.get("NAME", "").split())
        description = sections.get("DESCRIPTION", "").split("\n\n")
        match = re.match(r"(.+?)\s+-+\s+(.+)", name_line)
        if match and description[0].strip():
            names = [name.strip() for name in match.group(1).split(",") if name.strip()]
            kind = "system call" if key.startswith("man2/") else "C library function"
            question = f"Instruction: What does the {kind} `{names[0]}` do?\nResponse: "
            answer = f"{', '.join(names)} - {match.group(2)}.\n{' '.join(description[0].split())}"
            yield f"man/{key}", question + _fit(answer, max_bytes - _nbytes(question))


def _faq_instruction_units(root: str, max_bytes: int) -> list[_Unit]:
    directory = _require_dir(os.path.join(root, _RST_DIR), "python3-doc")
    units: list[_Unit] = []
    for path in sorted(glob.glob(os.path.join(directory, "faq", "*.rst.txt"))):
        page = os.path.basename(path)[: -len(".rst.txt")]
        units.append((f"python-faq/{page}", functools.partial(_faq_instructions, path, page, max_bytes)))
    return units


def _faq_instructions(path: str, page: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    """Each question heading of one FAQ page answered by its section's text."""
    source = _read_text(path).replace("\r\n", "\n")
    lines = source.split("\n")
    # A question is a heading: a line underlined with a run of one punctuation character.
    headings = [
        i for i in range(len(lines) - 1)
        if lines[i].strip() and _RST_UNDERLINE.match(lines[i + 1].strip())
        and len(lines[i + 1].strip()) >= len(lines[i].strip()) and lines[i].rstrip().endswith("?")
    ]
    for number, start in enumerate(headings):
        stop = len(lines)
        for j in range(start + 2, len(lines) - 1):
            if lines[j].strip() and _RST_UNDERLINE.match(lines[j + 1].strip()) and len(lines[j + 1].strip()) >= len(lines[j].strip()):
                stop = j
                break
        question = _rst_inline(lines[start].strip())
        answer = clean_rst("\n".join(lines[start + 2: stop]))
        if not answer:
            continue
        prompt = f"Instruction: {question}\nResponse: "
        yield f"python-faq/{page}/{number}", prompt + _fit(answer, max_bytes - _nbytes(prompt))


_API_KINDS = {
    "function": "function", "method": "method", "class": "class", "exception": "exception",
    "decorator": "decorator", "classmethod": "method", "staticmethod": "method",
    "coroutinefunction": "coroutine function", "coroutinemethod": "coroutine method",
    "decoratormethod": "decorator",
}
_API_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:py:)?(\w+)::\s*(.*)$")


def _python_api_units(root: str, max_bytes: int) -> list[_Unit]:
    directory = _require_dir(os.path.join(root, _RST_DIR), "python3-doc")
    units: list[_Unit] = []
    for path in sorted(glob.glob(os.path.join(directory, "library", "*.rst.txt"))):
        page = os.path.basename(path)[: -len(".rst.txt")]
        units.append((f"python-api/{page}", functools.partial(_python_api_instructions, path, page, max_bytes)))
    return units


def _python_api_instructions(path: str, page: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    """'What does the Python function `json.dumps` do?' answered by its signature and first paragraph.

    Reads the library reference's description directives (``.. function::``, ``.. method::`` nested
    in a ``.. class::``, ...), qualified by the page's current ``.. module::``.
    """
    lines = _read_text(path).replace("\r\n", "\n").split("\n")
    module = ""
    classes: list[tuple[int, str]] = []  # (indent, name) of the enclosing class directives
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        match = _API_DIRECTIVE.match(lines[i])
        i += 1
        if not match:
            continue
        indent, kind, argument = len(match.group(1)), match.group(2), match.group(3).strip()
        if kind in ("module", "currentmodule"):
            module = "" if argument == "None" else argument
            continue
        if kind not in _API_KINDS:
            continue
        while argument.endswith("\\") and i < len(lines):  # a signature continued on the next line
            argument = argument[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        classes = [(level, name) for level, name in classes if level < indent]
        name = re.split(r"[(\s\[]", argument, maxsplit=1)[0]
        if not re.fullmatch(r"[\w.]+", name):
            continue
        owner = classes[-1][1] if classes else ""
        local = name
        if owner and name.startswith(owner.rsplit(".", 1)[-1] + "."):
            local = name.split(".", 1)[1]  # ".. method:: Enum.__format__" inside ".. class:: Enum"
        qualified = ".".join(part for part in (module if not owner else "", owner, local) if part)
        if module and not owner and not qualified.startswith(module + "."):
            qualified = f"{module}.{name}" if not name.startswith(module + ".") else name
        if kind in ("class", "exception"):
            classes.append((indent, qualified))
        # The first paragraph of the body. reST puts a blank line between the directive's header
        # (more signatures, options) and its content, so the content starts after the first blank line.
        body: list[str] = []
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        while j < len(lines):
            line = lines[j]
            stripped = line.strip()
            if stripped and len(line) - len(line.lstrip()) <= indent:
                break
            if body and not stripped:
                break
            if stripped and not body and _API_DIRECTIVE.match(line):
                break  # the body starts with another directive: no prose of its own
            if stripped:
                body.append(stripped)
            j += 1
        paragraph = " ".join(clean_rst("\n".join(body)).split())
        if not paragraph or qualified in seen:
            continue
        seen.add(qualified)
        what = _API_KINDS[kind]
        question = f"Instruction: What does the Python {what} `{qualified}` do?\nResponse: "
        signature = qualified + " ".join(argument.split())[len(name):]
        answer = f"{signature}\n{paragraph}"
        yield f"python-api/{page}/{qualified}", question + _fit(answer, max_bytes - _nbytes(question))


def instruction_documents(
    *,
    limit: int | None = None,
    min_bytes: int = 64,
    max_bytes: int = 512,
    kinds: Sequence[str] | None = None,
    root: str = "/",
) -> list[Document]:
    """Instruction-like documents, source ``"instructions"``, for recovering a pruned model (PASER).

    Three kinds (``kinds``: a subset of :data:`INSTRUCTION_KINDS`, in that order; None for all),
    each ``"Instruction: <question>\\nResponse: <answer>"``:

    - from every C API man page (manpages-dev): "What does the system call/C library function
      `NAME` do?" answered by the NAME line and the first DESCRIPTION paragraph
      (id ``instructions/man/man3/memcpy.3#0``);
    - from the Python FAQ (python3-doc): each question heading answered by its section's text
      (id ``instructions/python-faq/programming/12#0``);
    - from the Python library reference (python3-doc): "What does the Python function
      `json.dumps` do?" answered by the signature and the first paragraph of its description
      (id ``instructions/python-api/json/json.dumps#0``).

    The "man" answers repeat sentences of the manpages source and the "python-api" ones of the
    python-docs source; pass ``kinds`` to keep instructions apart from a held-out source.

    Answers are cut at a word boundary to fit ``max_bytes``; documents under ``min_bytes`` are
    dropped, duplicates kept once. ``limit`` reads pages in hash order and keeps a hash-of-id
    spread, as :func:`build_corpus` does with ``per_source``; the order is man pages then FAQ,
    each in key order.
    """
    _check_bounds(min_bytes, max_bytes)
    if limit is not None and limit < 0:
        raise CorpusError(f"limit must be >= 0 or None, got {limit}")

    def to_documents(key: str, text: str) -> list[Document]:
        text = text.strip()
        return [Document(f"{INSTRUCTIONS}/{key}#0", INSTRUCTIONS, text)] if min_bytes <= _nbytes(text) <= max_bytes else []

    wanted = list(INSTRUCTION_KINDS) if kinds is None else list(kinds)
    unknown = [kind for kind in wanted if kind not in INSTRUCTION_KINDS]
    if unknown:
        raise CorpusError(f"unknown instruction kind(s) {unknown}; expected names from {list(INSTRUCTION_KINDS)}")
    readers = {"man": _man_instruction_units, "python-faq": _faq_instruction_units, "python-api": _python_api_units}
    units = [unit for kind in INSTRUCTION_KINDS if kind in wanted for unit in readers[kind](root, max_bytes)]
    return _collect(units, to_documents, limit, may_sample=True)


# --------------------------------------------------------------------------------------------
# Provenance


def package_versions(root: str = "/") -> dict[str, str | None]:
    """Installed version of each of :data:`CORPUS_PACKAGES` (None when not installed), from dpkg's status.

    Why: ids and texts are the same on machines with the same versions of these packages, so a
    report's provenance should carry them.
    """
    versions: dict[str, str | None] = {package: None for package in CORPUS_PACKAGES}
    status = os.path.join(root, "var/lib/dpkg/status")
    try:
        with open(status, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return versions
    for stanza in text.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+):[ \t]*(.*)$", stanza, flags=re.M))
        name = fields.get("Package")
        if name in versions and fields.get("Status", "").endswith(" installed") and versions[name] is None:
            versions[name] = fields.get("Version")
    return versions


# --------------------------------------------------------------------------------------------
# JSONL


def write_jsonl(documents: Iterable[Document], path: str | os.PathLike[str]) -> None:
    """Write one ``{"id", "source", "text"}`` JSON object per line (UTF-8, not ASCII-escaped)."""
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for document in documents:
            handle.write(json.dumps({"id": document.id, "source": document.source, "text": document.text}, ensure_ascii=False))
            handle.write("\n")


def read_jsonl(path: str | os.PathLike[str]) -> list[Document]:
    """Documents written by :func:`write_jsonl`; CorpusError naming the line of a malformed record."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                out.append(Document(str(record["id"]), str(record["source"]), str(record["text"])))
            except (ValueError, KeyError, TypeError) as error:
                raise CorpusError(f"{Path(path)} line {number}: expected a JSON object with id, source, text; {error}") from error
    return out


# --------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gradsketch.lm.corpus OUT.jsonl [--per-source N] [--instructions]``: write the corpus.

    Prints the document count per source and the build time, so a run can be compared with
    another machine's (same package versions: same ids and texts).
    """
    import argparse
    import sys
    import time

    parser = argparse.ArgumentParser(prog="python -m gradsketch.lm.corpus", description=main.__doc__)
    parser.add_argument("out", help="JSONL file to write ({id, source, text} per line)")
    parser.add_argument("--per-source", type=int, default=None, help="cap per source (default: every document)")
    parser.add_argument("--min-bytes", type=int, default=64)
    parser.add_argument("--max-bytes", type=int, default=512)
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=None)
    parser.add_argument("--instructions", action="store_true", help="write instruction_documents() instead")
    parser.add_argument("--root", default="/", help="file-system root the packages are read from (default /)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.instructions:
            documents = instruction_documents(limit=args.per_source, min_bytes=args.min_bytes, max_bytes=args.max_bytes,
                                              root=args.root)
        else:
            documents = build_corpus(per_source=args.per_source, min_bytes=args.min_bytes, max_bytes=args.max_bytes,
                                     sources=args.sources, root=args.root)
    except CorpusError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    write_jsonl(documents, args.out)
    counts: dict[str, int] = {}
    for document in documents:
        counts[document.source] = counts.get(document.source, 0) + 1
    total_bytes = sum(_nbytes(document.text) for document in documents)
    for source, count in counts.items():
        print(f"{source:12s} {count:7d}")
    print(f"{'total':12s} {len(documents):7d} documents, {total_bytes / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
