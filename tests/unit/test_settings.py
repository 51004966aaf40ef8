"""Build settings are declared once (osbuilder/host/settings.py); the command line, the
Makefile's variables and the settings table of docs/building.md are derived from that
declaration."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from osbuilder.host import settings
from osbuilder.shared.errors import OsbError

ROOT = Path(__file__).resolve().parents[2]


def parsed(*argv: str) -> dict[str, object]:
    p = argparse.ArgumentParser()
    settings.add_arguments(p)
    return vars(p.parse_args(argv))


def test_settings_mk_is_generated_from_the_declaration() -> None:
    assert (ROOT / "settings.mk").read_text() == settings.makefile(), "run `make settings`"


def test_settings_table_is_generated_from_the_declaration() -> None:
    doc = (ROOT / settings.TABLE_DOC).read_text()
    table = re.search(r"<!-- settings table[^\n]*\n(.*?)<!-- end of settings table -->",
                      doc, re.S)
    assert table is not None
    assert table.group(1) == settings.markdown_table(), "run `make settings`"
    assert settings.with_table(doc) == doc


def test_every_flag_and_make_variable_is_one_setting() -> None:
    flags = [s.flag for _, s in settings.SETTINGS if s.flag]
    makes = [s.make for _, s in settings.SETTINGS if s.make]
    assert len(flags) == len(set(flags)) and len(makes) == len(set(makes))
    help_text = subprocess.run([sys.executable, "-m", "osbuilder", "build", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert all(f in help_text for f in flags)
    mk = (ROOT / "settings.mk").read_text()
    assert all(f"$({m}),{s.flag} $({m})" in mk for _, s in settings.SETTINGS
               if (m := s.make) and s.flag)


def test_flag_beats_environment_beats_computed_default() -> None:
    env = {"SOURCE_DATE_EPOCH": "1700000000", "OSB_K3S_CHANNEL_URL": "http://127.0.0.1:1/c"}
    opts, src = settings.resolve(parsed("--board", "rpi-arm64", "--format", "img,qcow2"), env)
    assert (opts.board, src["board"]) == ("rpi-arm64", "--board")
    assert (opts.formats, src["formats"]) == (("img", "qcow2"), "--format")
    assert (opts.source_date_epoch, src["source_date_epoch"]) == (
        1700000000, "environment SOURCE_DATE_EPOCH")
    assert opts.k3s_channel_url == "http://127.0.0.1:1/c"
    assert (opts.k3s_channel, src["k3s_channel"]) == ("stable", "default")
    assert (opts.compress, src["compress"]) == (False, "default")
    opts, src = settings.resolve(parsed("--compress"), {})
    assert opts.compress and src["compress"] == "--compress"
    assert src["source_date_epoch"] in ("git commit time", "now")


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(OsbError, match=r"SOURCE_DATE_EPOCH='yesterday': expected seconds"):
        settings.resolve(parsed(), {"SOURCE_DATE_EPOCH": "yesterday"})


def test_show_config_says_where_each_value_came_from(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("signing.key.pem", "signing.cert.pem", "ca.cert.pem"):
        (keys / name).write_text("x")
    out = subprocess.run(
        [sys.executable, "-m", "osbuilder", "show-config", "--board", "nuc-amd64",
         "--keys", str(keys)], capture_output=True, text=True, check=True,
        env={"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"}).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert rows["board"] == ["nuc-amd64", "--board"]
    assert rows["sign_key"] == [str(keys / "signing.key.pem"), "--keys"]
    assert rows["keyring"][0] == str(keys / "ca.cert.pem")
    assert rows["source_date_epoch"] == ["1700000000", "environment", "SOURCE_DATE_EPOCH"]
    assert rows["k3s_channel"] == ["stable", "default"]
