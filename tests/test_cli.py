from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import botperf
from botperf import _cli
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
    def add_failing(add_parser: _cli.AddParser) -> None:
        def fail(args: argparse.Namespace) -> int:
            raise botperf.BotperfError("the reason, and what to do")

        add_parser("fail").set_defaults(handler=fail)

    monkeypatch.setattr(_cli, "SUBCOMMANDS", [*_cli.SUBCOMMANDS, add_failing])
    assert main(["fail"]) == 1
    assert capsys.readouterr().err == "botperf: error: the reason, and what to do\n"


def test_module_entry_point_exits_with_main_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["botperf"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("botperf", run_name="__main__")
    assert exit_info.value.code == 0


def test_report_into_a_closed_pipe_stops_quietly_with_status_141(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(f'{{"ts": {1.7e9 + i}, "event": "e{i % 50}", "x_ms": {i}}}\n' for i in range(500)),
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "botperf", "report", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # the reader goes away before botperf writes, as `| head` may
    errors = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 141
    assert errors == b""


def test_broken_pipe_sends_the_rest_of_stdout_to_devnull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def add_piping(add_parser: _cli.AddParser) -> None:
        def pipe(args: argparse.Namespace) -> int:
            raise BrokenPipeError

        add_parser("pipe").set_defaults(handler=pipe)

    monkeypatch.setattr(_cli, "SUBCOMMANDS", [*_cli.SUBCOMMANDS, add_piping])
    with (tmp_path / "stdout").open("w", encoding="utf-8") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        assert main(["pipe"]) == _cli.EXIT_BROKEN_PIPE
        print("still buffered at exit", file=stdout)
    assert (tmp_path / "stdout").read_text(encoding="utf-8") == ""


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            PermissionError(13, "Permission denied", "/data/m.jsonl"),
            "/data/m.jsonl: Permission denied",
        ),
        (OSError("no room left"), "no room left"),
    ],
)
def test_an_os_error_in_a_command_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: OSError,
    line: str,
) -> None:
    def add_failing(add_parser: _cli.AddParser) -> None:
        def fail(args: argparse.Namespace) -> int:
            raise error

        add_parser("fail").set_defaults(handler=fail)

    monkeypatch.setattr(_cli, "SUBCOMMANDS", [*_cli.SUBCOMMANDS, add_failing])
    assert main(["fail"]) == 1
    assert capsys.readouterr().err == f"botperf: error: {line}\n"


def test_a_bad_input_and_a_bad_output_are_one_line_and_status_1_from_the_shell(
    tmp_path: Path,
) -> None:
    # A folder where the metrics file or the page should be: unusable for root too.
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"ts": 1, "event": "a"}\n')
    for args in ([str(tmp_path)], [str(metrics), "--html", str(tmp_path)]):
        completed = subprocess.run(
            [sys.executable, "-m", "botperf", "report", *args],
            capture_output=True,
            text=True,
        )
        assert completed.returncode == 1
        assert completed.stderr.count("\n") == 1
        assert completed.stderr.startswith("botperf: error: ")
