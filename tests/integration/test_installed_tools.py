"""Every external program the suite, the benchmarks or the product runs, run the way they run
it, so a package missing from scripts/install-deps.sh fails here, loudly and by name, instead
of as a puzzling failure deep in another test. scripts/test.sh runs this file right after
install-deps.sh; it is part of the suite too.

"It happens to be on this machine" is not enough: each program is executed, against a real
tgtd where it talks iSCSI. A program used anywhere must be listed here (a test greps the
sources for the names of the programs this file knows, to keep both lists honest).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import find_tool
from tests.harness.tgtd import Tgtd

ROOT = Path(__file__).resolve().parents[2]
IQN = "iqn.2026-11.example:tools"
MiB = 1 << 20

#: program -> Debian package (what scripts/install-deps.sh must install)
PROGRAMS = {
    "tgtd": "tgt",
    "tgtadm": "tgt",
    "iscsi-ls": "libiscsi-bin",
    "iscsi-inq": "libiscsi-bin",
    "iscsi-readcapacity16": "libiscsi-bin",
    "iscsi-perf": "libiscsi-bin",
    "iscsi-test-cu": "libiscsi-bin",  # the reference of bench/conformance_compare.py
    "libvirtd": "libvirt-daemon",
    "virtlogd": "libvirt-daemon",
    "virsh": "libvirt-clients",
    "virt-xml-validate": "libvirt-clients",
    "xmllint": "libxml2-utils",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "sh": "dash",
    "dd": "coreutils",
    "cmp": "diffutils",  # bench/run.py compares transferred bytes
    "timeout": "coreutils",
    "getent": "libc-bin",
    "mount": "mount",  # a 1 MiB tmpfs for the full-disk test of vol-download
    "umount": "mount",
    "losetup": "mount",  # a block device for vol-download's in-place output
}


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    path = find_tool(argv[0])
    assert path is not None, (
        f"{argv[0]!r} is not installed (Debian package {PROGRAMS[argv[0]]!r}): "
        "add it to scripts/install-deps.sh"
    )
    return subprocess.run(
        [path, *argv[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _ok(*argv: str, timeout: float = 60) -> str:
    r = _run(*argv, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def target() -> Iterator[Tgtd]:
    """tgtd and tgtadm, as the harness runs them."""
    with Tgtd.start() as t:
        t.new_target(1, IQN)
        t.add_lun(1, 1, MiB)
        assert IQN in t.show()  # tgtadm --op show
        yield t


def test_libiscsi_tools_against_tgtd(target: Tgtd) -> None:
    assert IQN in _ok("iscsi-ls", f"iscsi://{target.portal}")
    url = target.url(1, 1)
    assert "DIRECT_ACCESS" in _ok("iscsi-inq", url)
    assert _ok("iscsi-readcapacity16", "-s", url).strip() == str(MiB)
    assert "iops" in _ok("iscsi-perf", "-t", "1", url, timeout=30).lower()
    assert "SCSI.Read10.Simple" in _ok("iscsi-test-cu", "--list").split()


def test_qemu_img_opens_an_iscsi_lun(target: Tgtd) -> None:
    """qemu-img with QEMU's iSCSI block driver (qemu-block-extra), as the benchmarks and the
    attach tests (QEMU opens the LUN itself) need it."""
    opts = f"driver=iscsi,transport=tcp,portal={target.portal},target={IQN},lun=1"
    out = _ok("qemu-img", "info", "--image-opts", opts)
    assert "virtual size: 1 MiB" in out, out


def test_libvirt_programs() -> None:
    assert _ok("virsh", "--version").strip()
    assert "libvirtd" in _ok("libvirtd", "--version")
    assert "virtlogd" in _ok("virtlogd", "--version")
    assert "default-pool" in _ok("virsh", "-c", "test:///default", "pool-list", "--all")
    assert "QEMU emulator" in _ok("qemu-system-x86_64", "--version")


def test_schema_validation_needs_xmllint() -> None:
    """virt-xml-validate is a shell script around xmllint (Debian libxml2-utils)."""
    assert "libxml" in _ok("xmllint", "--version")
    _ok("virt-xml-validate", str(ROOT / "xml-examples" / "pool.xml"), "storagepool")


def test_shell_tools() -> None:
    assert _ok("sh", "-c", "echo ok") == "ok\n"
    _ok("dd", "if=/dev/zero", "of=/dev/null", "bs=4096", "count=1")
    _ok("timeout", "5", "sh", "-c", "true")
    _ok("getent", "passwd", "nobody")
    assert "mount" in _ok("mount", "--version")
    assert "umount" in _ok("umount", "--version")
    assert "losetup" in _ok("losetup", "--version")


def test_python_side() -> None:
    """pip (install-deps.sh installs the package with it) and libvirt-python."""
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, f"no pip for {sys.executable}: {r.stderr.strip()} (python3-pip)"
    import libvirt  # noqa: F401  (built from source by pip: needs libvirt-dev, gcc)


def test_every_program_used_is_listed_here() -> None:
    """Programs looked up with find_tool/require_tool/_need, run by subprocess with a literal
    argv, by test_harness.py's tool() or by the benchmarks must all be in PROGRAMS."""
    lookups = re.compile(r"(?:find_tool|require_tool|_need)\(\s*\"([a-z0-9_.-]+)\"")
    argv = re.compile(r"subprocess\.\w+\(\s*\[\s*\"([a-z0-9_.-]+)\"")
    harness_tool = re.compile(r"\btool\(\s*\"([a-z0-9_.-]+)\"\)")
    # a program's name, not an option list such as ["-b", "8", ...]
    bench_argv = re.compile(r"(?:\[|\brun\()\s*\"([a-z0-9][a-z0-9_.-]*)\",")
    used: set[str] = set()
    for base in ("tests", "bench", "poolbackend", "scripts"):
        for path in (ROOT / base).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            used |= set(lookups.findall(text)) | set(argv.findall(text))
    used |= set(harness_tool.findall((ROOT / "tests/integration/test_harness.py").read_text()))
    used |= set(bench_argv.findall((ROOT / "bench/run.py").read_text()))
    used.discard("no-such-tool-for-poolbackend")  # the harness's own negative test
    assert {"tgtd", "virsh", "iscsi-perf", "qemu-img", "sh"} <= used, "the scan finds too little"
    assert used <= set(PROGRAMS), f"programs used but not checked here: {used - set(PROGRAMS)}"


def test_install_deps_installs_every_package() -> None:
    script = (ROOT / "scripts" / "install-deps.sh").read_text()
    for program, package in PROGRAMS.items():
        if package in ("dash", "coreutils", "diffutils", "libc-bin"):  # Essential: always there
            continue
        assert re.search(rf"^\s+{re.escape(package)}$", script, re.M), (
            f"{program}: package {package} missing from scripts/install-deps.sh"
        )
