"""The code fingerprint that tells reload an upgrade happened."""

from __future__ import annotations

from pathlib import Path

from evpn_agent import code


def test_fingerprint_follows_the_sources(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "b.py").write_text("B = 2\n")
    (package / "data.txt").write_text("not code")
    first = code.fingerprint.__wrapped__(package)
    assert first == code.fingerprint.__wrapped__(package)
    (package / "data.txt").write_text("still not code")
    assert code.fingerprint.__wrapped__(package) == first
    (package / "sub" / "b.py").write_text("B = 3\n")
    assert code.fingerprint.__wrapped__(package) != first
    # a module moved is other code even with the same bytes
    (package / "sub" / "b.py").rename(package / "b.py")
    assert code.fingerprint.__wrapped__(package) not in (first,)


def test_the_installed_package_has_one() -> None:
    assert len(code.fingerprint()) == 16 and code.fingerprint() == code.fingerprint()
