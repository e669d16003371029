"""Tests of gradsketch.lm.corpus: the text corpus read from Debian packages.

Two kinds: hand-built inputs (a fake file-system root with tiny packages, hand-written groff/reST,
the splitter) whose expected documents are written out by hand here, and the installed packages
(CORPUS_PACKAGES), built with a small per_source cap so the whole file runs in seconds.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from gradsketch.lm import corpus as C
from gradsketch.lm.corpus import CorpusError, Document

# --------------------------------------------------------------------------------------------
# splitter


def test_split_cuts_on_paragraph_then_line_then_word() -> None:
    # paragraph "aaa\n\n" (5 bytes) fits; the rest (11 bytes) is cut after its newline.
    assert C.split_text("aaa\n\nbbb\nccc ddd", 8) == ["aaa\n\n", "bbb\n", "ccc ddd"]
    # a line too long for max_bytes is cut after spaces, greedily
    assert C.split_text("one two three four", 9) == ["one two ", "three ", "four"]
    # a word longer than max_bytes is cut between characters, never inside one (é is 2 bytes)
    assert C.split_text("ééééé", 4) == ["éé", "éé", "é"]
    assert C.split_text("", 8) == []
    assert C.split_text("short", 8) == ["short"]


def test_split_keeps_every_byte_of_a_known_text() -> None:
    text = (
        "Première ligne — avec des accents.\n\n"
        "Second paragraph: a long line of words that will need cutting at spaces somewhere\n"
        "and a line with 日本語の文字 (3-byte characters) and 🙂 (4 bytes).\n\n\n"
        "x" * 70 + "\n" + "last"
    )
    for max_bytes in (4, 5, 7, 16, 33, 64, 200, 10_000):
        pieces = C.split_text(text, max_bytes)
        assert "".join(pieces) == text
        assert all(0 < len(piece.encode("utf-8")) <= max_bytes for piece in pieces)
    with pytest.raises(CorpusError, match="max_bytes"):
        C.split_text(text, 3)


# --------------------------------------------------------------------------------------------
# cleaners


GROFF_PAGE = r""".\" Copyright line that must vanish
.TH FROB 3 2024-01-01 "Test pages"
.SH NAME
frob, unfrob \- twiddle a \fIwidget\fP
.SH SYNOPSIS
.nf
.B #include <frob.h>
.PP
.BI "int frob(int " n );
.fi
.SH DESCRIPTION
The
.BR frob ()
function frobs \fBn\fR widgets\(emquickly.  \" a trailing comment
It returns \-1 on error.
.TP
.B EINVAL
.I n
was negative.
"""


# GROFF_PAGE as text, written by hand.
GROFF_TEXT = (
    "NAME\n\n"
    "frob, unfrob - twiddle a widget\n\n"
    "SYNOPSIS\n\n"
    "#include <frob.h>\n\n"
    "int frob(int n);\n\n"
    "DESCRIPTION\n\n"
    "The frob() function frobs n widgets--quickly. It returns -1 on error.\n\n"
    "EINVAL\n\n"
    "n was negative."
)


def test_clean_groff_hand_page() -> None:
    assert C.clean_groff(GROFF_PAGE) == GROFF_TEXT


def test_clean_groff_list_items_and_tables() -> None:
    source = (
        ".SH NOTES\n"
        "Two ways:\n"
        ".IP \\(bu 3\n"
        "the first\n"
        "way.\n"
        ".IP \\(bu\n"
        "the second.\n"
        ".IP EAGAIN\n"
        "try again.\n"
        ".TS\n"
        "allbox;\n"
        "lb lb.\n"
        "Interface\tValue\n"
        ".TE\n"
        "Back to\\~text \\\\e and \\[u00E9]t\\(e'.\n"
    )
    assert C.clean_groff(source) == (
        "NOTES\n\nTwo ways:\n\n* the first way.\n\n* the second.\n\nEAGAIN\n\ntry again.\n\n"
        "Interface | Value\n\nBack to text \\e and \u00e9t\u00e9."
    )


def test_clean_rst_literal_markers() -> None:
    assert C.clean_rst("Use this::\n\n   x = 1\n\nOr this. ::\n\n   y = 2\n\n::\n\n   z = 3\n") == (
        "Use this:\n\n   x = 1\n\nOr this.\n\n   y = 2\n\n   z = 3"
    )


RST_PAGE = """\
.. _frob-label:

Frobbing
========

.. index:: single: frob

.. function:: frob(n, *, quick=False)

   Frob *n* widgets with :func:`frob` or :meth:`~pkg.Widget.twiddle`; see
   :ref:`the guide <frob-guide>` and ``frob(3)``.  **Never** twice::

      frob(2)

   .. versionadded:: 3.4

   .. note::

      Frobbing is :term:`idempotent
      <idempotency>`.
"""


# RST_PAGE as text, written by hand.
RST_TEXT = (
    "Frobbing\n\n"
    "frob(n, *, quick=False)\n\n"
    "   Frob n widgets with frob or twiddle; see\n"
    "   the guide and frob(3).  Never twice:\n\n"
    "      frob(2)\n\n"
    "   New in version 3.4\n\n"
    "   Note:\n\n"
    "      Frobbing is idempotent."
)


def test_clean_rst_hand_page() -> None:
    assert C.clean_rst(RST_PAGE) == RST_TEXT


# --------------------------------------------------------------------------------------------
# a fake root with tiny packages


def _write(path: Path, text: str, *, gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    else:
        path.write_text(text, encoding="utf-8")


FORTUNE_A = "A fortune long enough to be kept as a document, about computers and life.\n\t\t-- Someone"
FORTUNE_SHORT = "Too short."
POEM = "Roses are red, violets are blue,\nthis poem is long enough to keep,\nand so are you."
HEADER = (
    "/* Copyright (C) 2024 Free Software Foundation.\n   GNU Lesser General Public License.  */\n\n"
    "#ifndef FROB_H\n#define FROB_H 1\n/*\n * Parts: Copyright 1998 Someone,\n * under the GNU General Public License.\n */\n"
    "\nextern int frob (int __n) __THROW;\n\n#endif /* frob.h */\n"
)
CHANGELOG = (
    "frob (1.1-1) unstable; urgency=medium\n\n"
    "  * New upstream release with a long enough description of its changes.\n"
    "    Thanks to Bob <bob.smith@mail.example.com>.\n\n"
    " -- Jane Doe <jane@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n\n"
    "frob (1.0-1) unstable; urgency=low\n\n"
    "  * Initial release.\n\n"
    " -- Jane Doe <jane@example.org>  Sun, 31 Dec 2023 00:00:00 +0000\n"
)


def _fake_root(root: Path) -> Path:
    fortunes = root / "usr/share/games/fortunes"
    _write(fortunes / "computers", f"{FORTUNE_A}\n%\n{FORTUNE_SHORT}\n%\n")
    _write(fortunes / "computers.dat", "binary index, ignored")
    _write(fortunes / "songs-poems", f"{POEM}\n%\n")
    _write(root / "usr/share/man/man3/frob.3.gz", GROFF_PAGE, gz=True)
    _write(root / "usr/share/man/man3/unfrob.3.gz", ".so man3/frob.3\n", gz=True)
    _write(root / "usr/share/doc/python3-doc/html/_sources/library/frob.rst.txt", RST_PAGE)
    _write(root / "usr/include/frob.h", HEADER)
    _write(root / "usr/share/doc/frob/changelog.Debian.gz", CHANGELOG, gz=True)
    info = root / "var/lib/dpkg/info"
    _write(info / "manpages-dev.list", "/usr/share/man\n/usr/share/man/man3/frob.3.gz\n/usr/share/man/man3/unfrob.3.gz\n")
    _write(info / "libc6-dev:amd64.list", "/usr/include\n/usr/include/frob.h\n")
    _write(info / "linux-libc-dev:amd64.list", "/usr/include\n")
    return root


def test_fake_root_gives_the_hand_computed_documents(tmp_path: Path) -> None:
    root = str(_fake_root(tmp_path))
    documents = C.build_corpus(root=root, min_bytes=20, max_bytes=512)
    expected = [
        Document("fortunes/computers/0#0", "fortunes",
                 "A fortune long enough to be kept as a document, about computers and life.\n-- Someone"),
        Document("poems/songs-poems/0#0", "poems", POEM),
        Document("manpages/man3/frob.3#0", "manpages", GROFF_TEXT),
        Document("python-docs/library/frob#0", "python-docs", RST_TEXT),
        Document("c-headers/frob.h#0", "c-headers",
                 "#ifndef FROB_H\n#define FROB_H 1\n\nextern int frob (int __n) __THROW;\n\n#endif /* frob.h */"),
        Document("changelogs/frob/1.1-1#0", "changelogs",
                 "frob (1.1-1) unstable; urgency=medium\n\n"
                 "  * New upstream release with a long enough description of its changes.\n"
                 "    Thanks to Bob.\n\n"
                 " -- Jane Doe, Mon, 01 Jan 2024 00:00:00 +0000"),
        Document("changelogs/frob/1.0-1#0", "changelogs",
                 "frob (1.0-1) unstable; urgency=low\n\n  * Initial release.\n\n"
                 " -- Jane Doe, Sun, 31 Dec 2023 00:00:00 +0000"),
    ]
    assert documents == expected  # the 10-byte fortune and the .so alias page dropped; e-mails cut

    # a 60-byte cap splits the man page on paragraph boundaries; every part keeps its index
    parts = C.build_corpus(root=root, min_bytes=1, max_bytes=60, sources=["manpages"])
    assert [d.id for d in parts][:3] == ["manpages/man3/frob.3#0", "manpages/man3/frob.3#1", "manpages/man3/frob.3#2"]
    # greedy packing: "NAME\n\n...widget\n\nSYNOPSIS\n\n" is 49 bytes, the next paragraph would make 68
    assert parts[0].text == "NAME\n\nfrob, unfrob - twiddle a widget\n\nSYNOPSIS"
    # nothing but whitespace at the cuts is lost
    assert " ".join(d.text for d in parts).split() == GROFF_TEXT.split()
    assert all(len(d.text.encode()) <= 60 for d in parts)


def test_fake_root_instructions(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    _write(root / "usr/share/doc/python3-doc/html/_sources/faq/general.rst.txt",
           "General FAQ\n===========\n\nWhy is it called ``frob``?\n--------------------------\n\n"
           "Because :func:`frob` frobs.\n\nIs it fast?\n-----------\n\nNo.\n")
    documents = C.instruction_documents(root=str(root), min_bytes=10)
    assert documents == [
        Document("instructions/man/man3/frob.3#0", "instructions",
                 "Instruction: What does the C library function `frob` do?\n"
                 "Response: frob, unfrob - twiddle a widget.\n"
                 "The frob() function frobs n widgets--quickly. It returns -1 on error."),
        Document("instructions/python-faq/general/0#0", "instructions",
                 "Instruction: Why is it called frob?\nResponse: Because frob frobs."),
        Document("instructions/python-faq/general/1#0", "instructions", "Instruction: Is it fast?\nResponse: No."),
        Document("instructions/python-api/frob/frob#0", "instructions",
                 "Instruction: What does the Python function `frob` do?\n"
                 "Response: frob(n, *, quick=False)\n"
                 "Frob n widgets with frob or twiddle; see the guide and frob(3). Never twice:"),
    ]
    assert C.instruction_documents(root=str(root), min_bytes=10, kinds=["python-faq"]) == documents[1:3]
    # An answer is cut at whitespace to fit max_bytes: the question takes 67 bytes, so 53 remain;
    # the answer's byte 52 is the space before "frobs", the last whitespace within 53 bytes.
    short = C.instruction_documents(root=str(root), min_bytes=10, max_bytes=120, kinds=["man"])
    assert [d.text for d in short] == ["Instruction: What does the C library function `frob` do?\n"
                                       "Response: frob, unfrob - twiddle a widget.\nThe frob() function"]
    with pytest.raises(CorpusError, match="unknown instruction kind"):
        C.instruction_documents(root=str(root), kinds=["poems"])


def test_package_versions(tmp_path: Path) -> None:
    _write(tmp_path / "var/lib/dpkg/status",
           "Package: fortunes\nStatus: install ok installed\nArchitecture: all\nVersion: 1:1.99.1-7.3\n\n"
           "Package: libc6-dev\nStatus: deinstall ok config-files\nVersion: 2.36-9\n\n"
           "Package: manpages-dev\nStatus: install ok installed\nVersion: 6.03-2\nDescription: x\n more\n")
    versions = C.package_versions(str(tmp_path))
    assert set(versions) == set(C.CORPUS_PACKAGES)
    assert versions["fortunes"] == "1:1.99.1-7.3" and versions["manpages-dev"] == "6.03-2"
    assert versions["libc6-dev"] is None and versions["python3-doc"] is None
    assert set(C.package_versions(str(tmp_path / "nothing")).values()) == {None}


def test_missing_package_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"fortunes.*apt-get install"):
        C.build_corpus(root=str(tmp_path))
    with pytest.raises(CorpusError, match="manpages-dev"):
        C.build_corpus(root=str(tmp_path), sources=["manpages"])
    with pytest.raises(CorpusError, match="python3-doc"):
        C.build_corpus(root=str(tmp_path), sources=["python-docs"])
    with pytest.raises(CorpusError, match="libc6-dev"):
        C.build_corpus(root=str(tmp_path), sources=["c-headers"])
    with pytest.raises(CorpusError, match="unknown source"):
        C.build_corpus(root=str(tmp_path), sources=["novels"])
    with pytest.raises(CorpusError, match="min_bytes"):
        C.build_corpus(min_bytes=100, max_bytes=50)


def test_jsonl_round_trip(tmp_path: Path) -> None:
    documents = [
        Document("poems/x/1#0", "poems", 'Line "one"\n\tline two — ünïcödé 🙂\\n'),
        Document("fortunes/y/2#3", "fortunes", "plain"),
    ]
    path = tmp_path / "corpus.jsonl"
    C.write_jsonl(documents, path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"id": "poems/x/1#0", "source": "poems", "text": documents[0].text}
    assert C.read_jsonl(path) == documents
    path.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="line 1"):
        C.read_jsonl(path)


def test_command_line_writes_the_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(_fake_root(tmp_path / "root"))
    out = tmp_path / "corpus.jsonl"
    assert C.main([str(out), "--root", root, "--min-bytes", "20"]) == 0
    assert C.read_jsonl(out) == C.build_corpus(root=root, min_bytes=20)
    assert re.search(r"^total\s+7 documents", capsys.readouterr().out, flags=re.M)
    assert C.main([str(tmp_path / "none.jsonl"), "--root", str(tmp_path / "empty")]) == 1
    assert "fortunes" in capsys.readouterr().err and not (tmp_path / "none.jsonl").exists()


# --------------------------------------------------------------------------------------------
# the installed packages


def _installed() -> bool:
    try:
        for package in C.CORPUS_PACKAGES:
            C._package_files("/", package)
    except CorpusError:
        return False
    return True


needs_packages = pytest.mark.skipif(
    not _installed(), reason=f"corpus packages not installed: apt-get install {' '.join(C.CORPUS_PACKAGES)}"
)

# Markup that must not survive cleaning, per source where it would come from.
RESIDUE = {
    "manpages": [r"\\f[BIRP(\[]", r"^\.(TH|SH|SS|B|I|BR|IR|TP|PP|nf|fi)\b", r"\\\(", r"\\-", r"^'\\\""],
    "python-docs": [r":(func|meth|class|mod|ref|term|data|attr|exc|const|c:\w+):`", r"``\w", r"^\s*\.\. \w+::",
                    r"^={3,}$", r"^-{3,}$"],
}


@needs_packages
def test_installed_corpus_small() -> None:
    per_source = 40
    first = C.build_corpus(per_source=per_source)
    assert first == C.build_corpus(per_source=per_source)  # deterministic: order, ids, text
    ids = [d.id for d in first]
    assert len(ids) == len(set(ids))
    assert [d.source for d in first] == [s for s in C.SOURCES for _ in range(per_source)]
    for document in first:
        assert document.id.startswith(document.source + "/") and re.search(r"#\d+$", document.id)
        assert 64 <= len(document.text.encode("utf-8")) <= 512, document.id
        assert document.text == document.text.strip()
        for pattern in RESIDUE.get(document.source, []):
            assert not re.search(pattern, document.text, flags=re.M), (document.id, pattern, document.text)
    # a spread, not the first files: the man pages chosen come from both sections and many pages
    pages = {d.id.split("#")[0] for d in first if d.source == "manpages"}
    assert len(pages) >= 20 and any("/man2/" in p for p in pages) and any("/man3/" in p for p in pages)
    # other bounds are honoured too
    tight = C.build_corpus(per_source=10, min_bytes=100, max_bytes=200, sources=["python-docs", "poems"])
    assert [d.source for d in tight] == ["poems"] * 10 + ["python-docs"] * 10
    assert all(100 <= len(d.text.encode()) <= 200 for d in tight)


@needs_packages
def test_installed_instructions() -> None:
    documents = C.instruction_documents(limit=30)
    assert len(documents) == 30 and len({d.id for d in documents}) == 30
    assert documents == C.instruction_documents(limit=30)
    for document in documents:
        assert document.source == "instructions" and document.id.startswith("instructions/")
        assert re.match(r"Instruction: .+\?\nResponse: \S", document.text, flags=re.S), document.text
        assert 64 <= len(document.text.encode("utf-8")) <= 512
    dumps = dict(C._python_api_instructions("/usr/share/doc/python3-doc/html/_sources/library/json.rst.txt", "json", 512))
    assert dumps["python-api/json/json.dumps"].startswith(
        "Instruction: What does the Python function `json.dumps` do?\nResponse: json.dumps(obj, *, skipkeys=False,"
    )
    assert "Serialize obj to a JSON formatted str" in dumps["python-api/json/json.dumps"]
    assert "python-api/json/json.JSONDecoder.decode" in dumps  # a method nested in its class
    memcpy = C._man_instruction("/usr/share/man/man3/memcpy.3.gz", "man3/memcpy.3", 512)
    assert next(memcpy)[1].startswith(
        "Instruction: What does the C library function `memcpy` do?\nResponse: memcpy - copy memory area.\n"
        "The memcpy() function copies n bytes from memory area src to memory area dest."
    )
