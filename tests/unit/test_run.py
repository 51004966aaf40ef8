"""The external-command wrapper: argv only, typed failures with the stderr tail."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.shared.errors import CommandError, OsbError
from osbuilder.shared.run import output, require_tools, run


def test_output_returns_stdout() -> None:
    assert output(["printf", "a b"]) == "a b"


def test_failure_carries_argv_code_and_stderr_tail() -> None:
    script = "for i in $(seq 1 40); do echo line$i >&2; done; exit 3"
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", script])
    err = info.value
    assert err.returncode == 3 and err.argv[0] == "sh"
    assert err.stderr_tail.splitlines() == [f"line{i}" for i in range(16, 41)]
    assert "command failed (exit 3): sh -c" in str(err)


def test_missing_binary_is_a_user_error() -> None:
    with pytest.raises(OsbError, match="host tool not found: no-such-tool-xyz"):
        run(["no-such-tool-xyz"])


def test_require_tools_names_tool_and_package() -> None:
    with pytest.raises(OsbError, match=r"no-such-mkfs \(apt-get install fancy-fs-tools\)"):
        require_tools({"sh": "dash", "no-such-mkfs": "fancy-fs-tools"})
    require_tools({"sh": "dash"})


def test_log_file_takes_both_streams_and_feeds_the_failure_tail(tmp_path: Path) -> None:
    log = tmp_path / "tool.log"
    run(["sh", "-c", "echo out; echo err >&2"], log_file=log)
    assert sorted(log.read_text().splitlines()) == ["err", "out"]
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "for i in $(seq 1 30); do echo step$i; done; exit 4"], log_file=log)
    assert info.value.stderr_tail.splitlines() == [f"step{i}" for i in range(6, 31)]
    assert log.read_text().splitlines()[0] == "step1"
