"""Target conformance tests (``poolbackend iscsi-test``) under iscsi-test-cu's names."""
