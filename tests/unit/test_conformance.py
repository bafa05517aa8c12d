"""The conformance tool (``poolbackend iscsi-test``): registry, selection, JUnit, and a sample
of tests driven against the scripted fake target answering correctly and answering wrongly."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from poolbackend.cli.main import main
from poolbackend.conformance import runner
from poolbackend.conformance.context import Context, RunOptions
from poolbackend.conformance.registry import all_tests, select
from poolbackend.iscsi.aio import SessionOptions
from poolbackend.iscsi.url import parse_url
from tests.harness.faketarget import FakeCheckCondition, FakeLun, FakeTarget

IQN = "iqn.2026-12.example:conform"
Hook = Callable[[bytes, bytes], bytes | None]


def sbc10(lun: FakeLun) -> Hook:
    """READ(10)/WRITE(10) on the fake LUN's store (the fake itself knows only the 16-byte
    forms), done right."""

    def hook(cdb: bytes, out: bytes) -> bytes | None:
        if cdb[0] in (0x28, 0x2A):
            lba, n = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
            if lba + n > lun.blocks:
                raise FakeCheckCondition(0x05, 0x21)
            a, b = lba * lun.block_size, (lba + n) * lun.block_size
            if cdb[0] == 0x28:
                return bytes(lun.data[a:b])
            lun.data[a:b] = out
            return b""
        return None

    return hook


@pytest.fixture
def lun() -> FakeLun:
    return FakeLun(blocks=1024)


@pytest.fixture
def target(lun: FakeLun) -> Iterator[FakeTarget]:
    with FakeTarget("luns", luns={1: lun}, iqn=IQN, lifetime=60) as fake:
        yield fake


def run_tests(fake: FakeTarget, pattern: str, **opts: bool) -> dict[str, runner.Result]:
    url = parse_url(f"iscsi://{fake.portal}/{IQN}/1")
    ctx = Context(
        url=url,
        options=SessionOptions(timeout=5, reconnect=False),
        run_options=RunOptions(**opts),
    )
    try:
        ctx.setup()
        results = runner.run(select(all_tests(), [pattern]), ctx, io.StringIO())
    finally:
        ctx.close()
    return {r.test.full_name: r for r in results}


# -- registry and selection --------------------------------------------------------------
def test_names_are_family_suite_test_and_documented() -> None:
    tests = all_tests()
    assert len(tests) >= 200
    for t in tests:
        assert t.full_name.count(".") == 2 and t.family in ("SCSI", "iSCSI")
        assert t.doc and "Standard" in t.doc, t.full_name


def test_selection_by_family_suite_wildcard_and_all() -> None:
    tests = all_tests()
    names = [t.full_name for t in select(tests, ["SCSI.Read10"])]
    assert names and all(n.startswith("SCSI.Read10.") for n in names)
    assert [t.full_name for t in select(tests, ["SCSI.Read1?.Simple"])] == [
        "SCSI.Read10.Simple",
        "SCSI.Read12.Simple",
        "SCSI.Read16.Simple",
    ]
    assert {t.full_name for t in select(tests, ["ALL.Read6"])} == {
        "SCSI.Read6.Simple",
        "SCSI.Read6.BeyondEol",
    }
    assert select(tests, ["SCSI"]) == [t for t in tests if t.family == "SCSI"]
    assert select(tests, ["NoSuch.*"]) == []


def test_list_one_per_line_and_doc_with_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["iscsi-test", "--list", "--test=SCSI.Read10.BeyondEol"]) == 0
    assert capsys.readouterr().out == "SCSI.Read10.BeyondEol\n"
    assert main(["iscsi-test", "--list", "-V", "--test=SCSI.Read10.BeyondEol"]) == 0
    out = capsys.readouterr().out
    assert "LOGICAL BLOCK ADDRESS OUT OF RANGE" in out and "SBC-3" in out


def test_selection_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = tmp_path / "tests.txt"
    names.write_text("# mine\nSCSI.TestUnitReady.Simple\nSCSI.Read6.*\n")
    assert main(["iscsi-test", "--list", f"--test={names}"]) == 0
    assert sorted(capsys.readouterr().out.split()) == [
        "SCSI.Read6.BeyondEol",
        "SCSI.Read6.Simple",
        "SCSI.TestUnitReady.Simple",
    ]


def test_bad_selection_and_missing_url_are_one_line_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["iscsi-test", "--list", "--test=SCSI.Nope"]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "SCSI.Nope" in err
    assert main(["iscsi-test"]) == 1
    assert "needs a URL" in capsys.readouterr().err


# -- against the fake target: right answers pass, wrong answers fail -----------------------
def test_beyond_end_passes_when_the_target_refuses(target: FakeTarget, lun: FakeLun) -> None:
    lun.hook = sbc10(lun)
    r = run_tests(target, "SCSI.Read16.BeyondEol")["SCSI.Read16.BeyondEol"]
    assert r.verdict == "PASS", r.reason


def test_beyond_end_fails_when_the_target_reads_past_the_end(
    target: FakeTarget, lun: FakeLun
) -> None:
    def lenient(cdb: bytes, out: bytes) -> bytes | None:
        if cdb[0] == 0x88:  # READ(16) without any range check
            return bytes(int.from_bytes(cdb[10:14], "big") * lun.block_size)
        return None

    lun.hook = lenient
    r = run_tests(target, "SCSI.Read16.BeyondEol")["SCSI.Read16.BeyondEol"]
    assert r.verdict == "FAIL"
    assert "READ(16) of 1 block one block beyond the end (LBA 1024) returned GOOD" in r.reason
    assert "expected ILLEGAL REQUEST / LOGICAL BLOCK ADDRESS OUT OF RANGE" in r.reason


def test_test_unit_ready_pass_and_fail(target: FakeTarget, lun: FakeLun) -> None:
    assert run_tests(target, "SCSI.TestUnitReady.Simple")["SCSI.TestUnitReady.Simple"].verdict == (
        "PASS"
    )
    lun.not_ready = True
    r = run_tests(target, "SCSI.TestUnitReady.Simple")["SCSI.TestUnitReady.Simple"]
    assert r.verdict == "FAIL" and "NOT READY" in r.reason


def test_read_capacity16_must_agree_with_read_capacity10(target: FakeTarget, lun: FakeLun) -> None:
    name = "SCSI.ReadCapacity16.Simple"
    assert run_tests(target, name)[name].verdict == "PASS"
    lun.rc16 = (2047).to_bytes(8, "big") + (512).to_bytes(4, "big") + bytes(20)
    r = run_tests(target, name)[name]
    assert r.verdict == "FAIL"
    assert "reports 2048 blocks, READ CAPACITY(10) 1024" in r.reason


def test_inquiry_evpd_zero_with_a_page_code(target: FakeTarget, lun: FakeLun) -> None:
    # The fake answers standard INQUIRY whatever the page code: wrong.
    r = run_tests(target, "SCSI.Inquiry.EVPD")["SCSI.Inquiry.EVPD"]
    assert r.verdict == "FAIL"
    assert "returned GOOD, expected ILLEGAL REQUEST / INVALID FIELD IN CDB" in r.reason

    def strict(cdb: bytes, out: bytes) -> bytes | None:
        if cdb[0] == 0x12 and not cdb[1] & 1 and cdb[2]:
            raise FakeCheckCondition(0x05, 0x24)
        return None

    lun.hook = strict
    assert run_tests(target, "SCSI.Inquiry.EVPD")["SCSI.Inquiry.EVPD"].verdict == "PASS"


def test_optional_command_missing_skips_and_mandatory_missing_fails(target: FakeTarget) -> None:
    results = run_tests(target, "SCSI.Read1[02].Simple")
    r12 = results["SCSI.Read12.Simple"]
    assert r12.verdict == "SKIP" and "READ(12) is not implemented" in r12.reason
    r10 = results["SCSI.Read10.Simple"]  # the fake lacks READ(10): mandatory, so a failure
    assert r10.verdict == "FAIL" and "INVALID COMMAND OPERATION CODE" in r10.reason.upper()


def test_write_tests_skip_without_dataloss_and_check_data_with_it(
    target: FakeTarget, lun: FakeLun
) -> None:
    r = run_tests(target, "SCSI.Write16.Simple")["SCSI.Write16.Simple"]
    assert r.verdict == "SKIP" and "--dataloss" in r.reason
    lun.hook = sbc10(lun)
    r = run_tests(target, "SCSI.Write16.Simple", dataloss=True)["SCSI.Write16.Simple"]
    assert r.verdict == "PASS", r.reason


# -- JUnit -------------------------------------------------------------------------------
def test_junit_xml_is_valid_with_suites_failures_and_skips(
    target: FakeTarget, lun: FakeLun
) -> None:
    lun.not_ready = True
    results = list(run_tests(target, "SCSI.TestUnitReady.Simple").values())
    results += list(run_tests(target, "SCSI.Write10.Simple").values())
    root = ET.fromstring(runner.junit_xml(results))
    assert root.tag == "testsuites" and root.get("tests") == "2"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"SCSI.TestUnitReady", "SCSI.Write10"}
    tur = suites["SCSI.TestUnitReady"].find("testcase")
    assert tur is not None
    assert (tur.get("classname"), tur.get("name")) == ("SCSI.TestUnitReady", "Simple")
    failure = tur.find("failure")
    assert failure is not None and "NOT READY" in (failure.get("message") or "")
    assert suites["SCSI.TestUnitReady"].get("failures") == "1"
    w = suites["SCSI.Write10"].find("testcase/skipped")
    assert w is not None and "--dataloss" in (w.get("message") or "")


def test_sanitize_needs_allow_sanitize_and_multipath_needs_url2(
    target: FakeTarget, lun: FakeLun
) -> None:
    results = run_tests(target, "SCSI.Sanitize.*", dataloss=True)
    assert len(results) == 11
    assert all(r.verdict == "SKIP" and "--allow-sanitize" in r.reason for r in results.values())
    lun.hook = sbc10(lun)
    r = run_tests(target, "SCSI.MultipathIO.Simple", dataloss=True)["SCSI.MultipathIO.Simple"]
    assert r.verdict == "SKIP" and "URL2" in r.reason


def test_protocol_tests_fail_on_a_target_that_breaks_rfc_7143(target: FakeTarget) -> None:
    # The fake target executes a command whatever its CmdSN and answers pings without their
    # data: both are wrong (RFC 7143 §4.2.2.1, §11.19); SendTargets it answers correctly.
    results = run_tests(target, "iSCSI.iSCSIcmdsn.iSCSICmdSnTooHigh")
    high = results["iSCSI.iSCSIcmdsn.iSCSICmdSnTooHigh"]
    assert high.verdict == "FAIL" and "above MaxCmdSN" in high.reason
    assert "a target must silently ignore it" in high.reason
    nop = run_tests(target, "iSCSI.iSCSINop.Simple")["iSCSI.iSCSINop.Simple"]
    assert nop.verdict == "FAIL" and "did not echo the 1 bytes" in nop.reason
    st = run_tests(target, "iSCSI.iSCSISendTargets.Simple")["iSCSI.iSCSISendTargets.Simple"]
    assert st.verdict == "PASS", st.reason


def test_fail_fast_stops_after_the_first_failure(target: FakeTarget, lun: FakeLun) -> None:
    lun.not_ready = True
    url = parse_url(f"iscsi://{target.portal}/{IQN}/1")
    ctx = Context(url=url, options=SessionOptions(timeout=5, reconnect=False))
    out = io.StringIO()
    tests = select(all_tests(), ["SCSI.TestUnitReady.Simple", "SCSI.StartStopUnit.NoLoej"])
    assert [t.name for t in tests] == ["Simple", "NoLoej"]
    try:
        ctx.setup()
        results = runner.run(tests, ctx, out, fail_fast=True)
        assert [r.verdict for r in results] == ["FAIL"]
        results = runner.run(tests, ctx, out)
        assert len(results) == 2
    finally:
        ctx.close()
