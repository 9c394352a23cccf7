"""`make help`: every documented target once, in a group, one line of at most 120 characters."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO
from tools import make_help


def test_every_documented_target_is_listed_once_in_a_group() -> None:
    targets, groups, defaults = make_help.parse(REPO / "Makefile")
    grouped = [t for members in groups.values() for t in members]
    assert sorted(grouped) == sorted(set(grouped)), "a target in two groups"
    assert set(grouped) <= set(targets), f"grouped but undocumented: {set(grouped) - set(targets)}"
    assert set(targets) <= set(grouped), f"documented but in no group: {set(targets) - set(grouped)}"
    assert set(groups) == set(make_help.ORDER)
    assert "ENV=local" in defaults


def test_make_help_is_one_line_per_target() -> None:
    out = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    lines = out.splitlines()
    assert all(len(line) <= 120 for line in lines), max(lines, key=len)
    targets, _, _ = make_help.parse(REPO / "Makefile")
    for target in targets:
        assert sum(1 for line in lines if line.split()[:1] == [target]) == 1, target
    assert [line for line in lines if line.endswith(":")] == ["daily:", "local:", "cloud:", "checks:", "bench:"]


def test_a_closed_pipe_is_quiet() -> None:
    """`make help | head -1` (review #13): the reader went away, so no BrokenPipeError traceback and
    no make error; the pipe's read end is closed before make starts, so every write meets it."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            ["make", "--no-print-directory", "help"],
            cwd=REPO,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 0, proc.stderr
