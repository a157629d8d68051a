"""Path sandboxing of the dashboard (nuskybgd_widgets.paths)."""

import os

import pytest

from nuskybgd_engine.errors import BadFileError, NuSkyBgdError
from nuskybgd_widgets.paths import UnsafePathError, numbered_path, resolve_root, resolve_under


def test_relative_and_absolute_inside(tmp_path):
    root = resolve_root(tmp_path / "root", create=True)
    (root / "obs").mkdir()
    assert resolve_under(root, "obs") == root / "obs"
    assert resolve_under(root, str(root / "obs"), must_exist=True) == root / "obs"


@pytest.mark.parametrize("bad", ["../x", "obs/../../x", ".."])
def test_dotdot_refused(tmp_path, bad):
    with pytest.raises(UnsafePathError, match=r"'\.\.' is not allowed") as err:
        resolve_under(tmp_path, bad, what="obsdir")
    assert "obsdir" in str(err.value)


def test_absolute_outside_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UnsafePathError, match="is outside"):
        resolve_under(root, str(tmp_path / "elsewhere"))


def test_symlink_out_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", root / "link")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        resolve_under(root, "link/file.txt")


def test_missing_and_bad_root(tmp_path):
    with pytest.raises(BadFileError, match="not found"):
        resolve_under(tmp_path, "nothing", must_exist=True)
    with pytest.raises(BadFileError, match="not a directory"):
        resolve_root(tmp_path / "absent", what="data root")
    with pytest.raises(NuSkyBgdError):
        resolve_under(tmp_path, "a\x00b")


def test_numbered_path_never_overwrites(tmp_path):
    first = numbered_path(tmp_path, "fit.xcm")
    assert first == tmp_path / "fit.xcm"
    first.write_text("x")
    second = numbered_path(tmp_path, "fit.xcm")
    assert second == tmp_path / "fit2.xcm"
    second.write_text("y")
    assert numbered_path(tmp_path, "fit.xcm") == tmp_path / "fit3.xcm"
    with pytest.raises(UnsafePathError):
        numbered_path(tmp_path, "../fit.xcm")
