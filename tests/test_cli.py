from __future__ import annotations

import subprocess
import sys

import pytest

import botperf
from botperf._cli import main


def test_version_flag_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"botperf {botperf.__version__}"


def test_no_arguments_prints_help_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: botperf" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m_botperf_runs_the_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "botperf", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.strip() == f"botperf {botperf.__version__}"


def test_a_botperf_error_in_a_command_exits_1_with_its_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from botperf import _cli

    def add_failing(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        def fail(args: argparse.Namespace) -> int:
            raise botperf.BotperfError("the reason, and what to do")

        subparsers.add_parser("fail").set_defaults(handler=fail)

    monkeypatch.setattr(_cli, "SUBCOMMANDS", [*_cli.SUBCOMMANDS, add_failing])
    assert main(["fail"]) == 1
    assert capsys.readouterr().err == "botperf: error: the reason, and what to do\n"


def test_module_entry_point_exits_with_main_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["botperf"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("botperf", run_name="__main__")
    assert exit_info.value.code == 0
