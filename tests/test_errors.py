"""User errors reach the terminal as exactly one printable line."""

from __future__ import annotations

import shutil

from gradprobe.cli.main import main
from gradprobe.core.errors import one_line


def test_one_line_hand_computed():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("type: \x0f\x00 end") == "type: \\x0f\\x00 end"
    assert one_line("plain text, ü and µ stay") == "plain text, ü and µ stay"


def test_corrupt_parquet_message_is_one_printable_line(smoke_run, tmp_path, capsys):
    """Bug: random bytes in a records file gave a decoder message with a raw control
    character and a line break, so the 'one line' error spanned two."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("analysis", "index.html"))
    victim = sorted((run / "records").glob("cell-*.parquet"))[0]
    payload = bytearray(victim.read_bytes())
    payload[-2000:-8] = bytes((i * 37 + 15) % 256 for i in range(1992))  # footer garbage
    victim.write_bytes(bytes(payload))
    assert main(["analyze", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip("\n").isprintable()
    assert str(victim) in err and "not a readable Parquet file" in err
