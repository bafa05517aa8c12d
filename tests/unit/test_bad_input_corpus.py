"""The bad-input corpus: every refused XML document and URL fails cleanly, and libvirt agrees.

* ``tests/corpus/bad-xml/`` holds small refused documents and ``expected.tsv`` maps each to
  the command it is given and the one-line message we print; big or binary hostile documents
  are generated here (:data:`GENERATED`). ``tests/corpus/bad-urls.tsv`` lists refused
  libiscsi URLs for the three tools.
* Each entry runs the real CLI ``main(argv)`` in-process (fast) against a state directory
  that already holds one pool, one secret and an autostart link: exit status 1, exactly one
  ``error: …`` line on stderr, nothing on stdout, no traceback, the state directory
  byte-identical afterwards, and no network traffic at all. A sample also runs as
  ``python -m poolbackend`` subprocesses.
* The differential test validates every pool and secret document of the corpus and of
  ``xml-examples/`` with libvirt's own RELAX NG schemas (``/usr/share/libvirt/schemas``,
  Debian package ``libvirt-daemon``) and with ours, and requires the same accept/reject
  verdict wherever our namespace is not involved, except for the documented
  :data:`EXCEPTIONS`, whose libvirt C-parser behaviour is checked with ``virsh -c
  test:///default pool-define`` (libvirt's test driver, no daemon).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from poolbackend.cli.main import main
from poolbackend.errors import PoolBackendError
from poolbackend.pool.xml.pool import parse_pool_xml
from poolbackend.pool.xml.safe import PB_NS, SCHEMA_DIR
from poolbackend.pool.xml.secret import parse_secret_xml
from tests.conftest import ROOT, RunCli

CORPUS = ROOT / "tests" / "corpus"
BAD_XML = CORPUS / "bad-xml"
EXAMPLES = ROOT / "xml-examples"
LIBVIRT_SCHEMAS = Path("/usr/share/libvirt/schemas")
VIRSH = shutil.which("virsh")

TARGET = "iqn.2026-11.example:target1"
INITIATOR = "iqn.2026-11.example:initiator1"
MiB = 1 << 20


# ----------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One refused input: ``argv`` for the CLI, run in ``directory``, and the expected line."""

    id: str
    argv: tuple[str, ...]
    match: str  # '=' exact, '~' regular expression (fullmatch)
    message: str
    directory: Path = BAD_XML

    def check(self, line: str) -> None:
        if self.match == "=":
            assert line == self.message
        else:
            assert re.fullmatch(self.message, line), f"{line!r} !~ {self.message!r}"


def _argv(command: str, file: str) -> tuple[str, ...]:
    if command == "find-storage-pool-sources":
        return (command, "iscsi-direct", file)
    return (command, file)


def _rows(path: Path, columns: int) -> Iterator[list[str]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        row = line.split("\t")
        assert len(row) == columns, f"{path.name}:{number}: expected {columns} columns: {line!r}"
        yield row


def xml_cases() -> list[Case]:
    cases = []
    for file, command, match, message in _rows(BAD_XML / "expected.tsv", 4):
        assert match in ("=", "~"), file
        cases.append(Case(file, _argv(command, file), match, message))
    return cases


_ESCAPE = re.compile(r"\\(n|t|\\|x[0-9a-fA-F]{2})")


def _unescape(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return {"n": "\n", "t": "\t", "\\": "\\"}.get(code) or chr(int(code[1:], 16))

    return _ESCAPE.sub(one, text)


def url_cases() -> list[Case]:
    return [
        Case(f"{tool}:{url}", (tool, _unescape(url)), "=", message)
        for tool, url, message in _rows(CORPUS / "bad-urls.tsv", 3)
    ]


def _pool(
    name: str = "bad",
    host: str = "<host name='127.0.0.1'/>",
    initiator: str = INITIATOR,
    device: str = TARGET,
    extra: str = "",
) -> str:
    return (
        f"<pool type='iscsi-direct'>\n  <name>{name}</name>\n{extra}  <source>\n    {host}\n"
        f"    <device path='{device}'/>\n    <initiator>\n      <iqn name='{initiator}'/>\n"
        "    </initiator>\n  </source>\n</pool>\n"
    )


_SECRET = (
    "<secret ephemeral='no' private='yes'>\n  <usage type='iscsi'>\n    <target>t</target>\n"
    "  </usage>\n</secret>\n"
)


@dataclass(frozen=True)
class Generated:
    """A hostile document too big or too binary to commit, written at run time."""

    name: str
    command: str
    make: Callable[[], bytes]
    match: str
    message: str


def _too_large(name: str) -> str:
    return f"pool XML file '{name}' is too large (more than {MiB} bytes)"


def _malformed(name: str) -> str:
    return f"pool XML '{re.escape(name)}' line \\d+: malformed XML: .+"


def _not_utf8(kind: str, name: str) -> str:
    return f"{kind} XML '{name}': not UTF-8 XML text (binary data or UTF-16)"


GENERATED: list[Generated] = [
    Generated(
        "pool-huge-comment.xml",
        "pool-define",
        lambda: _pool(extra="  <!--" + "x" * MiB + "-->\n").encode(),
        "=",
        _too_large("pool-huge-comment.xml"),
    ),
    Generated(
        "pool-huge-17mib.xml",
        "pool-create",
        lambda: _pool(extra="  <!--" + "x" * (17 * MiB) + "-->\n").encode(),
        "=",
        _too_large("pool-huge-17mib.xml"),
    ),
    Generated(
        "pool-huge-name.xml",
        "pool-define",
        lambda: _pool(name="n" * (MiB + 1)).encode(),
        "=",
        _too_large("pool-huge-name.xml"),
    ),
    Generated(
        "pool-deep-nesting.xml",
        "pool-define",
        lambda: _pool(extra="  " + "<x>" * 10000 + "</x>" * 10000 + "\n").encode(),
        "~",
        _malformed("pool-deep-nesting.xml"),
    ),
    Generated(
        "pool-utf16-bom.xml",
        "pool-define",
        lambda: _pool().encode("utf-16"),
        "=",
        _not_utf8("pool", "pool-utf16-bom.xml"),
    ),
    Generated(
        "pool-utf16le-no-bom.xml",
        "pool-define",
        lambda: _pool().encode("utf-16-le"),
        "=",
        _not_utf8("pool", "pool-utf16le-no-bom.xml"),
    ),
    Generated(
        "pool-utf16-declared.xml",
        "pool-create",
        lambda: ("<?xml version='1.0' encoding='UTF-16'?>\n" + _pool()).encode("utf-16"),
        "=",
        _not_utf8("pool", "pool-utf16-declared.xml"),
    ),
    Generated(
        "pool-utf32.xml",
        "pool-define",
        lambda: _pool().encode("utf-32"),
        "=",
        _not_utf8("pool", "pool-utf32.xml"),
    ),
    Generated(
        "pool-nul-byte.xml",
        "pool-define",
        lambda: _pool(name="bad\0name").encode(),
        "=",
        _not_utf8("pool", "pool-nul-byte.xml"),
    ),
    Generated(
        "pool-binary-garbage.xml",
        "pool-define",
        lambda: bytes(range(256)) * 16,
        "=",
        _not_utf8("pool", "pool-binary-garbage.xml"),
    ),
    Generated(
        "pool-png.xml",
        "pool-define",
        lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
        "=",
        _not_utf8("pool", "pool-png.xml"),
    ),
    Generated(
        "pool-double-bom.xml",
        "pool-define",
        lambda: b"\xef\xbb\xbf\xef\xbb\xbf" + _pool().encode(),
        "~",
        _malformed("pool-double-bom.xml"),
    ),
    Generated(
        "pool-bom-only.xml",
        "pool-define",
        lambda: b"\xef\xbb\xbf",
        "=",
        "pool XML 'pool-bom-only.xml': document is empty",
    ),
    Generated(
        "pool-bom-declared-latin1.xml",
        "pool-define",
        lambda: b"\xef\xbb\xbf<?xml version='1.0' encoding='ISO-8859-1'?>\n" + _pool().encode(),
        "=",
        "pool XML 'pool-bom-declared-latin1.xml': declares encoding 'ISO-8859-1'; "
        "only UTF-8 is supported",
    ),
    Generated(
        "pool-control-character.xml",
        "pool-define",
        lambda: _pool(name="bad\x1b[31mname").encode(),
        "~",
        _malformed("pool-control-character.xml"),
    ),
    Generated(
        "pool-initiator-iqn-900k.xml",
        "pool-define",
        lambda: _pool(initiator=INITIATOR + "x" * 900_000).encode(),
        "=",
        "pool XML 'pool-initiator-iqn-900k.xml' line 7: element 'iqn': attribute 'name' is "
        "900030 bytes long; iSCSI names are at most 223 bytes (RFC 7143 section 4.2.7.1)",
    ),
    Generated(
        "pool-device-iqn-224-bytes.xml",
        "pool-define",
        lambda: _pool(device=TARGET + "x" * (224 - len(TARGET))).encode(),
        "=",
        "pool XML 'pool-device-iqn-224-bytes.xml' line 5: element 'device': attribute 'path' "
        "is 224 bytes long; iSCSI names are at most 223 bytes (RFC 7143 section 4.2.7.1)",
    ),
    Generated(
        "pool-many-hosts.xml",
        "pool-define",
        lambda: _pool(host="<host name='127.0.0.1'/>" * 5000).encode(),
        "=",
        "unsupported configuration: Expected exactly 1 host for the storage pool",
    ),
    Generated(
        "pool-name-300-bytes.xml",
        "pool-define",
        lambda: _pool(name="n" * 300).encode(),
        "=",
        f"invalid pool name '{'n' * 200}...': must be 1-250 bytes without '/'",
    ),
    Generated(
        "secret-utf16.xml",
        "secret-define",
        lambda: _SECRET.encode("utf-16"),
        "=",
        _not_utf8("secret", "secret-utf16.xml"),
    ),
    Generated(
        "secret-huge.xml",
        "secret-define",
        lambda: _SECRET.replace("</secret>", "<!--" + "x" * MiB + "--></secret>").encode(),
        "=",
        f"secret XML file 'secret-huge.xml' is too large (more than {MiB} bytes)",
    ),
    Generated(
        "source-utf16.xml",
        "find-storage-pool-sources",
        lambda: (
            f"<source><host name='127.0.0.1'/><initiator><iqn name='{INITIATOR}'/></initiator>"
            "</source>"
        ).encode("utf-16"),
        "=",
        _not_utf8("pool source", "source-utf16.xml"),
    ),
]

# Arguments that are not documents at all (paths are relative to the generated directory).
ODD_FILES: list[Case] = [
    Case(
        "missing-file",
        ("pool-define", "does-not-exist.xml"),
        "=",
        "cannot read pool XML file 'does-not-exist.xml': No such file or directory",
    ),
    Case(
        "newline-in-file-name",
        ("secret-define", "a\nb.xml"),
        "=",
        "cannot read secret XML file 'a\\nb.xml': No such file or directory",
    ),
    Case(
        "directory",
        ("pool-create", "."),
        "=",
        "cannot read pool XML file '.': Is a directory",
    ),
    Case(
        "dev-zero",
        ("pool-define", "/dev/zero"),
        "=",
        f"pool XML file '/dev/zero' is too large (more than {MiB} bytes)",
    ),
    Case("dev-null", ("pool-define", "/dev/null"), "=", "pool XML '/dev/null': document is empty"),
]

XML_CASES = xml_cases()
URL_CASES = url_cases()


def test_corpus_size_and_manifest_complete() -> None:
    files = {p.name for p in BAD_XML.iterdir() if p.suffix == ".xml"}
    listed = [case.id for case in XML_CASES]
    assert len(listed) == len(set(listed)), "a file is listed twice in expected.tsv"
    assert set(listed) == files, "expected.tsv and the files in tests/corpus/bad-xml differ"
    assert len(files) + len(GENERATED) >= 60
    assert len(URL_CASES) >= 20
    for prefix in ("pool-", "secret-", "source-"):
        assert sum(name.startswith(prefix) for name in files) >= 5, prefix
    assert max(p.stat().st_size for p in BAD_XML.iterdir()) < 64 * 1024, "commit no big files"


# ------------------------------------------------------------------ running the real CLI


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every path under ``root`` with its mode and content (link target for symlinks)."""
    result: dict[str, tuple[int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content: bytes | str | None = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        else:
            content = None
        result[str(path.relative_to(root))] = (info.st_mode, content)
    return result


def _run_main(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def state_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory holding one valid pool (autostarted) and one secret with a value,
    made once with the real CLI and copied for each test."""
    root = tmp_path_factory.mktemp("state-template")
    template = root / "state"
    value = root / "value.txt"
    value.write_text("s3cret-value")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POOLBACKEND_STATE_DIR", str(template))
        for argv in (
            ("pool-define", str(EXAMPLES / "pool.xml")),
            ("pool-autostart", "iscsi-pool"),
            ("secret-define", str(EXAMPLES / "secret.xml")),
            ("secret-set-value", "target1-chap", "--file", str(value), "--plain"),
        ):
            assert main(list(argv)) == 0, argv
    return template


@pytest.fixture
def populated_state(
    state_dir: Path, state_template: Path
) -> dict[str, tuple[int, bytes | str | None]]:
    """``state_dir`` (``POOLBACKEND_STATE_DIR``) filled from :func:`state_template`; returns
    its snapshot."""
    shutil.copytree(state_template, state_dir, symlinks=True, dirs_exist_ok=True)
    before = _snapshot(state_dir)
    assert any(name.endswith("iscsi-pool.xml") for name in before), before
    assert any("secrets" in name for name in before), before
    return before


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(asyncio, "open_connection", refuse)
    for name in list(os.environ):
        if name.startswith("LIBISCSI_"):
            monkeypatch.delenv(name)


def _check_refusal(
    case: Case,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    state_dir: Path,
    before: dict[str, tuple[int, bytes | str | None]],
) -> None:
    _no_network(monkeypatch)
    monkeypatch.chdir(case.directory)
    code, out, err = _run_main(case.argv, capsys)
    assert code == 1, (code, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith("error: ")
    case.check(err[len("error: ") : -1])
    assert _snapshot(state_dir) == before, "the state directory changed"


@pytest.mark.parametrize("case", XML_CASES, ids=[c.id for c in XML_CASES])
def test_bad_xml_file(
    case: Case,
    populated_state: dict[str, tuple[int, bytes | str | None]],
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _check_refusal(case, capsys, monkeypatch, state_dir, populated_state)


@pytest.fixture(scope="module")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("generated-bad-xml")
    for item in GENERATED:
        (directory / item.name).write_bytes(item.make())
    return directory


GENERATED_CASES = [Case(g.name, _argv(g.command, g.name), g.match, g.message) for g in GENERATED]


@pytest.mark.parametrize(
    "case", GENERATED_CASES + ODD_FILES, ids=[c.id for c in GENERATED_CASES + ODD_FILES]
)
def test_generated_hostile_input(
    case: Case,
    generated_dir: Path,
    populated_state: dict[str, tuple[int, bytes | str | None]],
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = Case(case.id, case.argv, case.match, case.message, generated_dir)
    _check_refusal(case, capsys, monkeypatch, state_dir, populated_state)


@pytest.mark.parametrize("case", URL_CASES, ids=[c.id for c in URL_CASES])
def test_bad_url(
    case: Case,
    populated_state: dict[str, tuple[int, bytes | str | None]],
    state_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _check_refusal(case, capsys, monkeypatch, state_dir, populated_state)
    for secret in ("s3cret", "hunter2", "w0rd"):
        assert secret not in case.message, "a password is shown"


SUBPROCESS_SAMPLE = [
    "pool-port-out-of-range.xml",
    "pool-billion-laughs.xml",
    "pool-latin1-bytes.xml",
    "secret-xxe.xml",
    "source-two-hosts.xml",
]


def test_subprocess_sample(
    populated_state: dict[str, tuple[int, bytes | str | None]],
    state_dir: Path,
    run_cli: RunCli,
    generated_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same refusals through ``python -m poolbackend``: exit status, stderr, no writes."""
    by_id = {case.id: case for case in XML_CASES}
    sample = [by_id[name] for name in SUBPROCESS_SAMPLE]
    sample += [
        next(c for c in URL_CASES if c.argv[0] == tool)
        for tool in ("iscsi-ls", "iscsi-inq", "iscsi-readcapacity")
    ]
    generated = {case.id: case for case in GENERATED_CASES}
    sample.append(
        Case(
            "huge",
            generated["pool-huge-17mib.xml"].argv,
            "=",
            generated["pool-huge-17mib.xml"].message,
            generated_dir,
        )
    )
    no_env = {name: None for name in os.environ if name.startswith("LIBISCSI_")}
    for case in sample:
        monkeypatch.chdir(case.directory)
        code, out, err = run_cli(*case.argv, env=no_env, timeout=30)
        assert code == 1, (case.id, code, err)
        assert out == "" and "Traceback" not in err, (case.id, err)
        assert err.count("\n") == 1 and err.startswith("error: "), (case.id, err)
        case.check(err[len("error: ") : -1])
        assert _snapshot(state_dir) == populated_state, case.id


# ------------------------------------------------------------ differential: libvirt's schema


def _libvirt_schema(name: str) -> etree.RelaxNG:
    path = LIBVIRT_SCHEMAS / name
    if not path.is_file():
        pytest.fail(
            f"libvirt's schema {path} is missing: install the Debian package 'libvirt-daemon' "
            "(scripts/install-deps.sh does); the differential test needs it",
            pytrace=False,
        )
    return etree.RelaxNG(etree.parse(str(path)))


def _our_schema(name: str) -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA_DIR / name)))


def _schema_accepts(schema: etree.RelaxNG, data: bytes) -> bool:
    """Whether ``data`` is well-formed (parsed without DTD loading, entity expansion or
    network access) and valid for ``schema``."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        document = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return False
    return bool(schema.validate(document))


def _we_accept(kind: str, data: bytes) -> bool:
    try:
        (parse_pool_xml if kind == "pool" else parse_secret_xml)(data, source_name="f.xml")
    except PoolBackendError as exc:
        assert "\n" not in str(exc)
        return False
    return True


LIBVIRT_PARSER = "libvirt-parser"
_NUL_TERMINATED = (
    "lxml decodes UTF-16/32 for the schema, but virsh reads the file as a NUL-terminated "
    "string and libvirt refuses it; we refuse anything but UTF-8"
)
POOLBACKEND = "poolbackend"

#: Documents where libvirt's schema and our parser disagree, and why. LIBVIRT_PARSER: the
#: schema accepts it but libvirt's C parser (``virsh pool-define``) refuses it; we refuse it
#: with libvirt's message. POOLBACKEND: libvirt's schema and C parser both accept it; we
#: refuse it on purpose. ``test_exceptions_match_libvirts_parser`` checks the first word
#: of each reason against virsh.
EXCEPTIONS: dict[str, tuple[str, str]] = {
    "pool-auth-secret-bad-uuid.xml": (
        LIBVIRT_PARSER,
        "the schema types <secret uuid> as text; the C parser checks it is a UUID",
    ),
    "pool-cow-feature.xml": (
        LIBVIRT_PARSER,
        "the schema allows <features><cow> for every pool type; the C parser only for fs/dir",
    ),
    "pool-initiator-empty-iqn.xml": (
        LIBVIRT_PARSER,
        "the schema types <iqn name> as text; the C parser refuses an empty initiator IQN",
    ),
    "pool-auth-type-ceph.xml": (
        POOLBACKEND,
        "iscsi-direct supports only CHAP: libvirt defines it and fails at pool-start",
    ),
    "pool-two-hosts.xml": (
        POOLBACKEND,
        "iscsi-direct uses exactly one host: libvirt defines it and fails at pool-start",
    ),
    "pool-port-minus-one.xml": (
        POOLBACKEND,
        "the schema's PortNumber allows -1 (unset); -1 is not a TCP port, so we say so",
    ),
    "pool-type-dir.xml": (POOLBACKEND, "poolbackend implements only iscsi-direct pools"),
    "pool-type-iscsi.xml": (POOLBACKEND, "poolbackend implements only iscsi-direct pools"),
    "pool-declared-latin1.xml": (POOLBACKEND, "only UTF-8 documents are accepted"),
    "pool-utf16-bom.xml": (LIBVIRT_PARSER, _NUL_TERMINATED),
    "pool-utf16-declared.xml": (LIBVIRT_PARSER, _NUL_TERMINATED),
    "pool-utf32.xml": (LIBVIRT_PARSER, _NUL_TERMINATED),
    "pool-bom-declared-latin1.xml": (POOLBACKEND, "only UTF-8 documents are accepted"),
    "secret-utf16.xml": (LIBVIRT_PARSER, _NUL_TERMINATED),
    "pool-doctype-only.xml": (POOLBACKEND, "any DTD is refused (no entity tricks possible)"),
    "pool-xxe-parameter-entity.xml": (
        POOLBACKEND,
        "any DTD is refused; libvirt does not fetch the external subset (XML_PARSE_NONET)",
    ),
    "pool-huge-comment.xml": (POOLBACKEND, "documents are limited to 1 MiB"),
    "pool-huge-name.xml": (POOLBACKEND, "documents are limited to 1 MiB"),
    "pool-many-hosts.xml": (
        POOLBACKEND,
        "iscsi-direct uses exactly one host: libvirt defines it and fails at pool-start",
    ),
    "secret-huge.xml": (POOLBACKEND, "documents are limited to 1 MiB"),
    "pool-initiator-iqn-900k.xml": (
        POOLBACKEND,
        "iSCSI names are at most 223 bytes (RFC 7143); the schema does not limit them",
    ),
    "pool-device-iqn-224-bytes.xml": (
        POOLBACKEND,
        "iSCSI names are at most 223 bytes (RFC 7143); the schema's pattern has no limit",
    ),
}

#: Where libvirt's schema and *our schema* disagree: ours is libvirt's reduced to iscsi-direct.
SCHEMA_EXCEPTIONS = {"pool-type-dir.xml", "pool-type-iscsi.xml"}


@dataclass(frozen=True)
class Document:
    name: str
    kind: str  # "pool" or "secret"
    data: bytes


def _kind(name: str, data: bytes) -> str | None:
    if name.startswith("pool") and name.endswith(".xml"):
        return "pool"
    if name.startswith("secret") and name.endswith(".xml"):
        return "secret"
    return None  # find-storage-pool-sources <source>: libvirt has no schema for it


def differential_documents() -> list[Document]:
    documents = []
    sources = [(p.name, p.read_bytes()) for p in sorted(BAD_XML.glob("*.xml"))]
    sources += [(f"xml-examples/{p.name}", p.read_bytes()) for p in sorted(EXAMPLES.glob("*.xml"))]
    sources += [(g.name, g.make()) for g in GENERATED if g.name != "pool-huge-17mib.xml"]
    for name, data in sources:
        kind = _kind(Path(name).name, data)
        if kind is None or PB_NS.encode() in data:
            continue  # not comparable: no libvirt schema, or our extension namespace
        documents.append(Document(name, kind, data))
    return documents


DOCUMENTS = differential_documents()
SCHEMA_FILES = {"pool": "storagepool.rng", "secret": "secret.rng"}


def test_differential_covers_the_corpus() -> None:
    names = {d.name for d in DOCUMENTS}
    assert len(DOCUMENTS) >= 100
    assert "xml-examples/pool.xml" in names and "xml-examples/secret.xml" in names
    assert "xml-examples/pool-mutual-chap.xml" not in names  # uses our namespace
    unknown = set(EXCEPTIONS) - names
    assert not unknown, f"EXCEPTIONS lists documents that do not exist: {unknown}"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=[d.name for d in DOCUMENTS])
def test_same_verdict_as_libvirts_schema(doc: Document) -> None:
    schema_file = SCHEMA_FILES[doc.kind]
    libvirt = _schema_accepts(_cached_schema("libvirt", schema_file), doc.data)
    ours_schema = _schema_accepts(_cached_schema("ours", schema_file), doc.data)
    ours = _we_accept(doc.kind, doc.data)
    if doc.name in SCHEMA_EXCEPTIONS:
        assert libvirt != ours_schema, f"{doc.name}: schemas now agree; update SCHEMA_EXCEPTIONS"
    else:
        assert libvirt == ours_schema, f"{doc.name}: libvirt's schema {libvirt}, ours {ours_schema}"
    if doc.name in EXCEPTIONS:
        reason = EXCEPTIONS[doc.name][1]
        assert (libvirt, ours) == (True, False), f"{doc.name}: no longer an exception ({reason})"
    else:
        assert libvirt == ours, (
            f"{doc.name}: libvirt's schema {'accepts' if libvirt else 'refuses'} it, "
            f"poolbackend {'accepts' if ours else 'refuses'} it"
        )


_SCHEMAS: dict[tuple[str, str], etree.RelaxNG] = {}


def _cached_schema(origin: str, name: str) -> etree.RelaxNG:
    key = (origin, name)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = _libvirt_schema(name) if origin == "libvirt" else _our_schema(name)
    return _SCHEMAS[key]


def test_libvirt_schemas_present() -> None:
    for name in ("storagepool.rng", "secret.rng", "storagevol.rng"):
        _libvirt_schema(name)


def test_exceptions_match_libvirts_parser(tmp_path: Path) -> None:
    """Ground truth for the pool EXCEPTIONS: libvirt's C parser (``virsh pool-define`` on
    the test driver) refuses the LIBVIRT_PARSER ones and accepts the POOLBACKEND ones
    (secrets cannot be checked: the test driver has no secret-define)."""
    if VIRSH is None:
        pytest.fail(
            "virsh is not installed (Debian package 'libvirt-clients'); run "
            "`bash scripts/install-deps.sh` as root",
            pytrace=False,
        )
    documents = {d.name: d for d in DOCUMENTS}
    wrong = []
    for name, (kind, reason) in EXCEPTIONS.items():
        if not name.startswith("pool"):
            continue
        path = tmp_path / name
        path.write_bytes(documents[name].data)
        result = subprocess.run(
            [VIRSH, "-q", "-c", "test:///default", "pool-define", str(path)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        accepted = result.returncode == 0
        if accepted != (kind == POOLBACKEND):
            wrong.append(f"{name}: virsh {'accepts' if accepted else 'refuses'} it ({reason})")
    assert not wrong, wrong
