"""scanner/privileges.py: raw-scan permission from the effective capabilities, not the uid."""
import os

from scanner import privileges as P


def status(tmp_path, capeff):
    path = tmp_path / "status"
    path.write_text(f"Name:\tpython\nCapInh:\t0000000000000000\nCapPrm:\t{capeff}\nCapEff:\t{capeff}\n")
    return str(path)


def test_from_capeff(tmp_path):
    assert P.can_raw_scan(status(tmp_path, "000001ffffffffff"))                     # root's full set
    assert P.can_raw_scan(status(tmp_path, f"{1 << 13:016x}"))                      # CAP_NET_RAW alone
    assert not P.can_raw_scan(status(tmp_path, f"{1 << 12:016x}"))                  # CAP_NET_ADMIN alone
    assert not P.can_raw_scan(status(tmp_path, "0000000000000000"))
    assert P.has_capability(P.CAP_NET_ADMIN, status(tmp_path, "0000000000003000"))
    assert P.missing_for_raw_scan(status(tmp_path, f"{1 << 13:016x}")) == ""
    assert "CAP_NET_RAW" in P.missing_for_raw_scan(status(tmp_path, "0"))


def test_without_proc_falls_back_to_the_uid(tmp_path):
    assert P.can_raw_scan(str(tmp_path / "absent")) == (os.geteuid() == 0)


def test_this_process_agrees_with_the_kernel():
    """The helper's answer for this process matches whether a raw socket actually opens."""
    import socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
        opened = True
    except PermissionError:
        opened = False
    assert P.can_raw_scan() == opened
