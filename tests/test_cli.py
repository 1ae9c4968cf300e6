"""The console script, run as a subprocess."""

from __future__ import annotations

import json

import numpy as np
import pytest

from portrait3d.cli import build_parser


def test_help_works(cli):
    res = cli("--help")
    assert res.returncode == 0
    assert "make-asset" in res.stdout and "cameras" in res.stdout


def test_every_subcommand_has_help(cli):
    parser = build_parser()
    names = sorted(parser._subparsers._group_actions[0].choices)  # noqa: SLF001 - the registered subcommands
    assert {"cameras", "preprocess", "proxy", "make-asset"} <= set(names)
    for name in names:
        res = cli(name, "--help")
        assert res.returncode == 0, (name, res.stderr)
        assert "usage: portrait3d" in res.stdout


def test_python_dash_m(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "portrait3d", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "portrait3d" in res.stdout


def test_cameras_command_writes_orbit(cli, tmp_path):
    out = tmp_path / "cams.json"
    res = cli("cameras", "--views", "32", "--out", str(out))
    assert res.returncode == 0, res.stderr
    labels = json.loads(out.read_text())["labels"]
    assert len(labels) == 32 and labels[0][0] == "0000.png"
    front = np.array(labels[0][1][:16]).reshape(4, 4)
    back = np.array(labels[16][1][:16]).reshape(4, 4)
    np.testing.assert_allclose(front[:3, 3], [0, 0, 2.7], atol=1e-9)
    assert back[2, 3] == pytest.approx(-2.7)


def test_cameras_command_bad_input(cli, tmp_path):
    res = cli("cameras", "--views", "0", "--out", str(tmp_path / "c.json"))
    assert res.returncode != 0
    assert res.stderr.strip().count("\n") == 0 and "--views" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "c.json").exists()


def test_quiet_flag_before_or_after_subcommand(cli, tmp_path):
    for args in (["-q", "cameras"], ["cameras", "-q"]):
        res = cli(*args, "--views", "4", "--out", str(tmp_path / "c.json"))
        assert res.returncode == 0 and res.stderr == "", (args, res.stderr)
    res = cli("cameras", "--views", "4", "--out", str(tmp_path / "c.json"))
    assert "wrote 4 cameras" in res.stderr


def test_an_interrupt_a_library_swallows_is_raised_again(monkeypatch):
    """trimesh catches BaseException around optional imports: a Ctrl-C landing there must not be lost."""
    import contextlib
    import signal

    from portrait3d import progress

    monkeypatch.setattr(progress, "_interrupted", False)
    with contextlib.suppress(BaseException):  # what such a library does
        progress.interrupt(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        for _ in progress.bar(range(3), desc="work"):
            pass
    with pytest.raises(KeyboardInterrupt), progress.stage("next"):
        pass


def test_entry_point_exits_with_mains_code_and_skips_the_last_collection(monkeypatch):
    """The console script ends with main's exit code, its objects frozen out of the interpreter's final garbage
    collection (0.5-1.2 s after a make-asset)."""
    import gc

    from portrait3d import cli

    frozen = []
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    with pytest.raises(SystemExit) as exit_info:
        cli.entry_point()
    assert exit_info.value.code == 3 and frozen == [True]
