"""``nowcast-prep``: help, the converter registry, user errors as one line, resume and skip flags."""

import datetime as dt
import sys

import pytest

from data_prep import registry
from data_prep.cli import main
from data_prep.composites import FmiConverter
from tests.helpers.archives.operational import time_steps, write_fmi_archive


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_help_lists_every_source_with_its_raw_layout(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for name, cls in registry.converters().items():
        assert f"\n{name}:\n" in out and cls.layout_help.strip().splitlines()[0] in out


def test_source_help_shows_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["fmi", "--help"])
    out = capsys.readouterr().out
    assert "--path-fmt" in out and "--max-gap" in out and "DN - 64" in out


def test_registry_skips_missing_modules_but_not_broken_ones(monkeypatch, tmp_path):
    (tmp_path / "broken_converter_module.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "CONVERTER_MODULES", ("data_prep.composites", "data_prep.not_written_yet"))
    registry.converters.cache_clear()
    assert registry.converters()["fmi"] is FmiConverter
    monkeypatch.setattr(registry, "CONVERTER_MODULES", ("data_prep.composites", "broken_converter_module"))
    registry.converters.cache_clear()
    with pytest.raises(ModuleNotFoundError, match="a_package_that_is_not_installed"):
        registry.converters()
    sys.modules.pop("broken_converter_module", None)
    registry.converters.cache_clear()


@pytest.mark.parametrize("argv, fragment", [
    (["fmi", "--dst", "x.zarr"], "--src"),
    (["not-a-source", "--src", ".", "--dst", "x.zarr"], "invalid choice"),
])
def test_command_line_mistakes_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and fragment in _one_line_error(capsys)


def test_archive_mistakes_exit_1_with_one_line(tmp_path, capsys):
    src, dst = tmp_path / "raw", tmp_path / "s.zarr"
    assert main(["fmi", "--src", str(src), "--dst", str(dst)]) == 1
    assert "does not exist" in _one_line_error(capsys)
    src.mkdir()
    assert main(["fmi", "--src", str(src), "--dst", str(dst)]) == 1
    assert "no file under" in _one_line_error(capsys)
    assert main(["fmi", "--src", str(src), "--dst", str(dst), "--path-fmt", "",
                 "--fn-pattern", "%H"]) == 1
    assert "must contain a year" in _one_line_error(capsys)


def test_complete_store_needs_overwrite_or_is_skipped(tmp_path, capsys):
    write_fmi_archive(tmp_path / "raw", time_steps(dt.datetime(2020, 1, 1), 3))
    args = ["fmi", "--src", str(tmp_path / "raw"), "--dst", str(tmp_path / "s.zarr"), "--no-progress"]
    assert main(args) == 0
    assert "3 frames" in capsys.readouterr().err
    assert main(args) == 1
    assert "--overwrite" in _one_line_error(capsys)
    assert main([*args, "--skip-if-complete"]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--workers", "2"]) == 0
