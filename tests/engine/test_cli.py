"""The ``nuskybgd`` command-line front end: syntax, help and one-line errors."""

import argparse
import subprocess
import sys

import pytest

from nuskybgd_engine.cli import build_parser, main, normalise_argv, yes_no


def test_key_value_syntax():
    assert normalise_argv(["aspecthist", "a.fits", "gtifile=g.fits", "out=h.fits"]) == [
        "aspecthist", "a.fits", "--gtifile", "g.fits", "--out", "h.fits"]
    assert normalise_argv(["x", "save_file=a=b"]) == ["x", "--save-file", "a=b"]
    assert normalise_argv(["absrmf", "e.evt", "!out"]) == ["absrmf", "e.evt", "out", "--overwrite"]
    assert normalise_argv(["x", "out=!h.fits"]) == ["x", "--out", "h.fits", "--overwrite"]
    assert normalise_argv(["x", "--out", "h.fits"]) == ["x", "--out", "h.fits"]


@pytest.mark.parametrize("text,value", [("yes", True), ("No", False), ("1", True), ("false", False)])
def test_yes_no(text, value):
    assert yes_no(text) is value


def test_yes_no_rejects():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        yes_no("maybe")


def test_every_step_has_help(capsys):
    parser = build_parser()
    steps = parser._subparsers._group_actions[0].choices
    assert steps, "no step registered"
    for name in steps:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        assert "usage: nuskybgd" in capsys.readouterr().out


def _arguments(parser, path=()):
    """(step path, action) of every argument of every step, sub-steps included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _arguments(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_every_argument_of_every_step_has_help():
    missing = [f"{step} {'/'.join(a.option_strings) or a.dest}" for step, a in _arguments(build_parser())
               if not (a.help or "").strip()]
    assert not missing, missing
    assert sum(1 for _ in _arguments(build_parser())) > 50  # the walk reaches every step


def test_help_prints_percent_signs_once(capsys):
    for step in ("predict", "mkinstrmap"):
        with pytest.raises(SystemExit):
            main([step, "--help"])
        out = capsys.readouterr().out
        assert "%%" not in out and " %" in out


def test_unknown_step_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["frobnicate"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "frobnicate" in err


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "nuskybgd_engine", "--version"], capture_output=True, text=True,
                         check=True)
    assert out.stdout.startswith("nuskybgd ")
