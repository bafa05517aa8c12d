"""Run one fuzz target under atheris (libFuzzer), or replay inputs without atheris.

    python -m tests.fuzz.run TARGET [libFuzzer options] [CORPUS_DIR ...]
    python -m tests.fuzz.run TARGET --replay FILE [FILE ...]
    python -m tests.fuzz.run --list

TARGET is one of pdu, login, scsi, xml, url (and canary, a planted bug for self-tests).
Everything after TARGET goes to libFuzzer unchanged, e.g. ``-max_total_time=3600``,
``-timeout=5`` (an input running longer is reported as a hang), ``-rss_limit_mb=2048``,
``-artifact_prefix=DIR/``, ``-jobs=N``. Without a corpus directory the seeds in
tests/fuzz/corpus/TARGET are used read-only (new units go to a temporary directory). A
finding makes the process exit non-zero and leaves a ``crash-*`` / ``timeout-*`` /
``oom-*`` file to replay with ``--replay``.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


def _replay(name: str, files: list[str]) -> int:
    from tests.fuzz.targets import TARGETS

    target = TARGETS[name]
    status = 0
    for path in files:
        try:
            result = target(Path(path).read_bytes())
        except Exception:
            print(f"{path}: FINDING", file=sys.stderr)
            traceback.print_exc()
            status = 1
        else:
            print(f"{path}: ok ({result!r})")
    return status


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "--list":
        from tests.fuzz.targets import TARGETS

        print("\n".join(TARGETS))
        return 0
    name, rest = argv[0], argv[1:]
    if rest[:1] == ["--replay"]:
        return _replay(name, rest[1:])

    import atheris

    # Coverage feedback for our code (and the targets' oracles), not for the stdlib.
    with atheris.instrument_imports(include=["poolbackend", "tests.fuzz.targets"]):
        from tests.fuzz.targets import TARGETS

    if name not in TARGETS:
        print(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    target = TARGETS[name]
    corpus_given = any(not a.startswith("-") for a in rest)
    seeds = CORPUS / name
    if not corpus_given and seeds.is_dir():
        # libFuzzer adds new units to the first directory: never to the committed seeds.
        scratch = tempfile.mkdtemp(prefix=f"fuzz-{name}-")
        rest += [scratch, str(seeds)]
        print(f"INFO: new corpus units go to {scratch}", file=sys.stderr)

    def test_one_input(data: bytes) -> None:
        target(data)

    atheris.Setup([sys.argv[0], *rest], test_one_input)
    atheris.Fuzz()  # exits the process
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
