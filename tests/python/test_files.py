"""``put_file`` / ``get_file`` with paths and file objects, and big files
streamed. What lands on the instance is checked with the ``lxc`` client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

import pytest
from conftest import HERE, lxc_exec, remote_sha1

INSTANCE = "p5"
NAME = f"@lxd_wasm/{INSTANCE}"
BINARY = bytes(range(256)) * 64 + b"\r\n\x00tail without newline"


@pytest.fixture
def host(make_state):
    return make_state(NAME).inventory.get_host(NAME)


@pytest.fixture
def rdir(remote_dir):
    remote_dir.on(INSTANCE)
    lxc_exec(INSTANCE, f"mkdir -p '{remote_dir}'")
    return remote_dir


def test_put_and_get_with_str_paths_round_trip_binary_content(host, rdir, tmp_path):
    src, back = tmp_path / "src.bin", tmp_path / "back.bin"
    src.write_bytes(BINARY)
    assert host.put_file(str(src), f"{rdir}/f.bin") is True
    assert remote_sha1(INSTANCE, f"{rdir}/f.bin") == hashlib.sha1(BINARY).hexdigest()
    assert host.get_file(f"{rdir}/f.bin", str(back)) is True
    assert back.read_bytes() == BINARY
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin", "src.bin"]  # no partial file left


def test_put_and_get_with_bytesio(host, rdir):
    assert host.put_file(io.BytesIO(BINARY), f"{rdir}/b.bin") is True
    assert remote_sha1(INSTANCE, f"{rdir}/b.bin") == hashlib.sha1(BINARY).hexdigest()
    out = io.BytesIO()
    assert host.get_file(f"{rdir}/b.bin", out) is True
    assert out.getvalue() == BINARY


def test_put_and_get_with_stringio_keep_non_ascii_text(host, rdir):
    text = "héllo wörld ✓\nzweite Zeile\n"
    assert host.put_file(io.StringIO(text), f"{rdir}/s.txt") is True
    assert lxc_exec(INSTANCE, f"cat '{rdir}/s.txt'").stdout == text.encode()
    out = io.StringIO()
    assert host.get_file(f"{rdir}/s.txt", out) is True
    assert out.getvalue() == text


def test_put_and_get_an_empty_file(host, rdir):
    assert host.put_file(io.BytesIO(b""), f"{rdir}/empty") is True
    assert lxc_exec(INSTANCE, f"wc -c < '{rdir}/empty'").stdout.strip() == b"0"
    out = io.BytesIO()
    assert host.get_file(f"{rdir}/empty", out) is True
    assert out.getvalue() == b""


def test_put_from_a_text_mode_file_object_with_multibyte_characters(host, rdir, tmp_path):
    # read(n) on a text file returns n characters: up to 3n bytes here.
    text = "é€" * 600_000 + "\nend\n"
    src = tmp_path / "text.txt"
    src.write_text(text, encoding="utf-8")
    with open(src, encoding="utf-8") as f:
        assert host.put_file(f, f"{rdir}/text.txt") is True
    assert remote_sha1(INSTANCE, f"{rdir}/text.txt") == hashlib.sha1(text.encode()).hexdigest()


def test_put_replaces_a_longer_existing_file_completely(host, rdir):
    host.put_file(io.BytesIO(b"a much longer first version\n" * 100), f"{rdir}/r.txt")
    host.put_file(io.BytesIO(b"short\n"), f"{rdir}/r.txt")
    assert lxc_exec(INSTANCE, f"cat '{rdir}/r.txt'").stdout == b"short\n"


def test_uploads_are_written_by_lxd_as_root_whatever_the_su_arguments(host, rdir):
    # Documented: LXD writes files itself; _sudo/_su_user do not apply.
    assert host.put_file(io.BytesIO(b"x"), f"{rdir}/owned", _su_user="tester") is True
    assert lxc_exec(INSTANCE, f"stat -c '%u' '{rdir}/owned'").stdout.strip() == b"0"


def test_failed_get_to_a_path_leaves_the_existing_local_file_untouched(host, rdir, tmp_path):
    dest = tmp_path / "keep.txt"
    dest.write_bytes(b"precious")
    with pytest.raises(OSError):
        host.get_file(f"{rdir}/does-not-exist", str(dest))
    assert dest.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_put_and_get_print_output_like_ssh(host, rdir, echo_log):
    host.put_file(io.BytesIO(b"x"), f"{rdir}/p.txt", print_output=True)
    host.get_file(f"{rdir}/p.txt", io.BytesIO(), print_output=True)
    assert echo_log == [
        (f"{host.print_prefix}file uploaded: {rdir}/p.txt", True),
        (f"{host.print_prefix}file downloaded: {rdir}/p.txt", True),
    ]
    echo_log.clear()
    host.put_file(io.BytesIO(b"x"), f"{rdir}/p.txt")
    host.get_file(f"{rdir}/p.txt", io.BytesIO())
    assert echo_log == []


def test_64_mib_round_trip_is_streamed_without_holding_the_file_in_memory(rdir, tmp_path):
    size = 64 << 20
    src, back = tmp_path / "big.bin", tmp_path / "big.back"
    digest = hashlib.sha1()
    with open(src, "wb") as f:
        for i in range(64):
            chunk = hashlib.sha256(str(i).encode()).digest() * (1 << 15) if i % 2 else os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    assert src.stat().st_size == size

    proc = subprocess.run(
        [sys.executable, str(HERE / "scripts" / "stream_big_file.py"), INSTANCE, str(src), f"{rdir}/big.bin", str(back)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    assert remote_sha1(INSTANCE, f"{rdir}/big.bin") == digest.hexdigest()
    with open(back, "rb") as f:
        assert hashlib.file_digest(f, "sha1").hexdigest() == digest.hexdigest()
    # The whole file is 64 MiB: a transfer that buffered it would raise the
    # peak RSS by at least that much. Allow a quarter of it for buffers.
    limit_kib = (size >> 10) // 4
    assert report["after_put_kib"] - report["before_put_kib"] < limit_kib, report
    assert report["after_get_kib"] - report["after_put_kib"] < limit_kib, report
