"""virsh table, size and labelled-list formatting (golden outputs of libvirt 9.0's virsh)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolbackend.cli.table import (
    display_width,
    format_labelled,
    format_table,
    pretty_capacity,
    sort_names,
)

KEY = "ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-"


def test_pool_list_golden() -> None:
    expected = (
        " Name         State    Autostart\n"
        "----------------------------------\n"
        " iscsi-pool   active   no\n"
        "\n"
    )
    assert (
        format_table(["Name", "State", "Autostart"], [["iscsi-pool", "active", "no"]]) == expected
    )


def test_pool_list_details_golden() -> None:
    rows = [
        [
            "chap-pool",
            "running",
            "no",
            "no",
            pretty_capacity(26214400),
            pretty_capacity(26214400),
            pretty_capacity(0),
        ],
        ["idle-pool", "inactive", "no", "yes", "-", "-", "-"],
        [
            "iscsi-pool",
            "running",
            "no",
            "yes",
            pretty_capacity(201325568),
            pretty_capacity(201325568),
            pretty_capacity(0),
        ],
    ]
    headers = ["Name", "State", "Autostart", "Persistent", "Capacity", "Allocation", "Available"]
    expected = (
        " Name         State      Autostart   Persistent   Capacity     Allocation   Available\n"
        "---------------------------------------------------------------------------------------\n"
        " chap-pool    running    no          no           25.00 MiB    25.00 MiB    0.00 B\n"
        " idle-pool    inactive   no          yes          -            -            -\n"
        " iscsi-pool   running    no          yes          192.00 MiB   192.00 MiB   0.00 B\n"
        "\n"
    )
    assert format_table(headers, rows) == expected


def test_vol_list_golden() -> None:
    rows = [[f"unit:0:0:{n}", f"{KEY}{n}"] for n in range(3)]
    expected = (
        " Name         Path\n"
        "-------------------------------------------------------------------------\n"
        " unit:0:0:0   ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-0\n"
        " unit:0:0:1   ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-1\n"
        " unit:0:0:2   ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-2\n"
        "\n"
    )
    assert format_table(["Name", "Path"], rows) == expected


def test_vol_list_details_golden() -> None:
    sizes = [0, 67108352, 134217216]
    rows = [
        [f"unit:0:0:{n}", f"{KEY}{n}", "network", pretty_capacity(s), pretty_capacity(s)]
        for n, s in enumerate(sizes)
    ]
    expected = (
        " Name         Path                                                        Type      "
        "Capacity     Allocation\n"
        "----------------------------------------------------------------------------------------"
        "---------------------\n"
        " unit:0:0:0   ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-0   network   "
        "0.00 B       0.00 B\n"
        " unit:0:0:1   ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-1   network   "
        "64.00 MiB    64.00 MiB\n"
        " unit:0:0:2   ip-127.0.0.1:3260-iscsi-iqn.2026-11.example:target1-lun-2   network   "
        "128.00 MiB   128.00 MiB\n"
        "\n"
    )
    assert format_table(["Name", "Path", "Type", "Capacity", "Allocation"], rows) == expected


def test_secret_list_golden() -> None:
    # observed with virsh 9.0 (secret driver)
    rows = [
        ["6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94", "iscsi t1"],
        ["6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a96", "ceph t1"],
        ["6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a97", "Unused"],
    ]
    expected = (
        " UUID                                   Usage\n"
        "--------------------------------------------------\n"
        " 6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94   iscsi t1\n"
        " 6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a96   ceph t1\n"
        " 6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a97   Unused\n"
        "\n"
    )
    assert format_table(["UUID", "Usage"], rows) == expected


def test_empty_table_has_header_rule_and_blank_line() -> None:
    # virsh vol-list of an empty pool
    assert format_table(["Name", "Path"], []) == " Name   Path\n--------------\n\n"


def test_test_driver_pool_list_details_golden() -> None:
    # virsh -c test:///default pool-list --details (libvirt 9.0)
    headers = ["Name", "State", "Autostart", "Persistent", "Capacity", "Allocation", "Available"]
    row = ["default-pool", "running", "no", "yes"]
    row += [pretty_capacity(107374182400), pretty_capacity(0), pretty_capacity(107374182400)]
    expected = (
        " Name           State     Autostart   Persistent   Capacity     Allocation   Available\n"
        "-----------------------------------------------------------------------------------------\n"
        " default-pool   running   no          yes          100.00 GiB   0.00 B       100.00 GiB\n"
        "\n"
    )
    assert format_table(headers, [row]) == expected


def test_rule_length_is_padded_width_plus_two() -> None:
    text = format_table(["a", "bbbb", "c"], [["xyz", "q", "last-column"]])
    header, rule, row, blank, end = text.split("\n")
    widths = [3, 4, 11]
    assert len(rule) == sum(w + 3 for w in widths)
    padded = 1 + sum(widths) + 3 * (len(widths) - 1)
    assert len(rule) == padded + 2
    assert row == " xyz   q      last-column"
    assert header == " a     bbbb   c"
    assert (blank, end) == ("", "")


def test_last_column_not_padded() -> None:
    text = format_table(["Name", "Path"], [["a", "long-path"], ["b", "x"]])
    assert " b      x\n" in text
    assert not any(line.endswith(" ") for line in text.splitlines())


def test_control_characters_escaped_and_wide_characters_counted() -> None:
    text = format_table(["N", "V"], [["a\nb", "x"], ["日本", "y"]])
    lines = text.splitlines()
    assert lines[2] == " a\\x0ab   x"
    assert lines[3] == " 日本     y"
    assert display_width("日本") == 4
    assert display_width("a\tb") == 6


def test_row_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError):
        format_table(["a", "b"], [["only-one"]])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0.00 B"),
        (1, "1.00 B"),
        (1023, "1023.00 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (67108352, "64.00 MiB"),
        (16776704, "16.00 MiB"),
        (201325568, "192.00 MiB"),
        (107374182400, "100.00 GiB"),
        (1024**4, "1.00 TiB"),
        (1024**5 * 3, "3.00 PiB"),
        (1024**6, "1.00 EiB"),
        (2**64 - 1, "16.00 EiB"),
        (1048575, "1024.00 KiB"),
    ],
)
def test_pretty_capacity(value: int, text: str) -> None:
    assert pretty_capacity(value) == text


def test_pretty_capacity_negative() -> None:
    with pytest.raises(ValueError):
        pretty_capacity(-1)


def test_pool_info_golden() -> None:
    pairs = [
        ("Name:", "iscsi-pool"),
        ("UUID:", "6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94"),
        ("State:", "running"),
        ("Persistent:", "yes"),
        ("Autostart:", "no"),
        ("Capacity:", pretty_capacity(201325568)),
        ("Allocation:", pretty_capacity(201325568)),
        ("Available:", pretty_capacity(0)),
    ]
    expected = (
        "Name:           iscsi-pool\n"
        "UUID:           6a1f3c2e-9b4d-4e8a-8f27-3c5d1e0b7a94\n"
        "State:          running\n"
        "Persistent:     yes\n"
        "Autostart:      no\n"
        "Capacity:       192.00 MiB\n"
        "Allocation:     192.00 MiB\n"
        "Available:      0.00 B\n"
        "\n"
    )
    assert format_labelled(pairs) == expected


def test_vol_info_golden() -> None:
    pairs = [
        ("Name:", "unit:0:0:1"),
        ("Type:", "network"),
        ("Capacity:", pretty_capacity(67108352)),
        ("Allocation:", pretty_capacity(67108352)),
    ]
    expected = (
        "Name:           unit:0:0:1\n"
        "Type:           network\n"
        "Capacity:       64.00 MiB\n"
        "Allocation:     64.00 MiB\n"
        "\n"
    )
    assert format_labelled(pairs) == expected


def test_sort_names_like_virsh() -> None:
    names = [f"unit:0:0:{n}" for n in (0, 1, 3, 2, 10, 11)]
    assert sort_names(names) == [
        "unit:0:0:0",
        "unit:0:0:1",
        "unit:0:0:10",
        "unit:0:0:11",
        "unit:0:0:2",
        "unit:0:0:3",
    ]
    assert sort_names(["iscsi-pool", "Chap-pool", "idle-pool", "B"]) == [
        "B",
        "Chap-pool",
        "idle-pool",
        "iscsi-pool",
    ]
    # strcasecmp folds to lower case: '_' (0x5f) sorts before letters
    assert sort_names(["b", "_a", "A"]) == ["_a", "A", "b"]


@given(st.lists(st.text(min_size=1, max_size=12), max_size=8))
def test_sort_names_is_a_case_insensitive_permutation(names: list[str]) -> None:
    result = sort_names(names)
    assert sorted(result) == sorted(names)
    keys = [name.encode("utf-8", "surrogateescape").lower() for name in result]
    assert keys == sorted(keys)


@given(
    st.lists(
        st.lists(st.text(alphabet="abc xyz-:0123", max_size=10), min_size=3, max_size=3),
        max_size=5,
    )
)
def test_table_columns_align(rows: list[list[str]]) -> None:
    text = format_table(["A", "Bee", "C"], rows)
    lines = text.split("\n")
    assert lines[-2:] == ["", ""]
    body = [lines[0], *lines[2:-2]]
    width0 = max(len(r[0]) for r in [["A"], *rows])
    for line in body:
        assert line.startswith(" ")
        assert line[1 + width0 : 1 + width0 + 3] == "   "
