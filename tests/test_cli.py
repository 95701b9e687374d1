"""The command line: --help everywhere, exit codes, errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lenshpc.cli import COMMANDS, build_parser, main


def test_every_verb_has_help(capsys):
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor
    assert set(verbs) <= set(COMMANDS)
    for verb in verbs:
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert f"lenshpc {verb}" in out


def test_all_verbs_are_implemented():
    parser = build_parser()
    verbs = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert verbs == set(COMMANDS), f"missing verbs: {sorted(set(COMMANDS) - verbs)}"


def test_no_verb_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: lenshpc" in capsys.readouterr().out


def test_user_error_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lenshpc", "info", str(tmp_path / "nope.h5")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "dataset not found" in proc.stderr and "Traceback" not in proc.stderr


def test_console_script_version():
    proc = subprocess.run(["lenshpc", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("lenshpc ")
