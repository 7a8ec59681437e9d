import io
import os
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from data_fakes import add_tar_member

from gannorm.data import DatasetError, SafeUnpickler, safe_member_name, safe_unpickle
from gannorm.data.archives import iter_tar, zip_names


@pytest.mark.parametrize("name, clean", [
    ("a/b.jpg", "a/b.jpg"), ("./a/b", "a/b"), ("a//b/", "a/b"), ("a/./b", "a/b"), ("x..y/..z", "x..y/..z"),
])
def test_safe_member_name_normalises(name, clean):
    assert safe_member_name(name) == clean


@pytest.mark.parametrize("name", [
    "../evil", "a/../../evil", "a/..", "..", "/etc/passwd", "\\evil", "C:\\evil", "c:/evil", "a\\..\\evil",
    "", "./", "a\x00b",
])
def test_safe_member_name_refuses(name):
    with pytest.raises(DatasetError) as e:
        safe_member_name(name, "x.tar")
    assert "x.tar" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("evil", ["../evil", "/abs/evil", "a/../../evil"])
def test_tar_with_evil_member_is_refused(tmp_path, evil):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_tar_member(tar, evil, b"x")
        add_tar_member(tar, "good", b"y")
    with pytest.raises(DatasetError, match="refusing archive member"):
        list(iter_tar(path, lambda n: True))


def test_tar_evil_link_target_is_refused(tmp_path):
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(DatasetError, match=r"\.\."):
        list(iter_tar(path, lambda n: True))


@pytest.mark.parametrize("kind, target, what", [
    (tarfile.SYMTYPE, "data_batch_2", "a symbolic link"), (tarfile.SYMTYPE, "/etc/passwd", "a symbolic link"),
    (tarfile.LNKTYPE, "d/one", "a hard link"), (tarfile.FIFOTYPE, "", "a device, FIFO"),
    (tarfile.CHRTYPE, "", "a device, FIFO"),
])
def test_tar_links_and_special_files_are_refused(tmp_path, kind, target, what):
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        add_tar_member(tar, "d/one", b"1")
        info = tarfile.TarInfo("d/link")
        info.type, info.linkname = kind, target
        tar.addfile(info)
    with pytest.raises(DatasetError, match=f"refusing archive member 'd/link' \\({what}") as e:
        list(iter_tar(path, lambda n: False))  # refused even when the member is not selected
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_tar_directories_are_fine(tmp_path):
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("d")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        add_tar_member(tar, "d/one", b"1")
    assert [(n, f.read()) for n, _, f in iter_tar(path, lambda n: True)] == [("d/one", b"1")]


def test_zip_symlink_member_is_refused(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.jpg", b"x")
        info = zipfile.ZipInfo("link.jpg")
        info.external_attr = (0o120777) << 16  # S_IFLNK | 0777
        zf.writestr(info, "/etc/passwd")
    with zipfile.ZipFile(path) as zf, pytest.raises(DatasetError, match="'link.jpg' \\(a symbolic link"):
        zip_names(zf, path)


def test_tar_streams_selected_members(tmp_path):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_tar_member(tar, "./d/one", b"1")
        add_tar_member(tar, "d/two", b"22")
    got = [(n, s, f.read()) for n, s, f in iter_tar(path, lambda n: n.startswith("d/"))]
    assert got == [("d/one", 1, b"1"), ("d/two", 2, b"22")]


def test_corrupt_tar_is_a_dataset_error(tmp_path):
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    with pytest.raises(DatasetError, match="cannot read"):
        list(iter_tar(path, lambda n: True))


@pytest.mark.parametrize("evil", ["../evil.jpg", "/abs.jpg", "a/../../evil.jpg"])
def test_zip_with_evil_member_is_refused(tmp_path, evil):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.jpg", b"x")
        zf.writestr(evil, b"x")
    with zipfile.ZipFile(path) as zf, pytest.raises(DatasetError, match="refusing archive member"):
        zip_names(zf, path)


def test_zip_names_skip_directories(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("d/", b"")
        zf.writestr("./d/x.jpg", b"x")
    with zipfile.ZipFile(path) as zf:
        assert zip_names(zf, path) == [("./d/x.jpg", "d/x.jpg")]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_unpickle_loads_numpy_dicts(protocol):
    d = {b"data": np.arange(24, dtype=np.uint8).reshape(2, 12), b"labels": [1, 2], b"name": b"batch",
         b"f": np.linspace(0, 1, 3)}
    out = safe_unpickle(io.BytesIO(pickle.dumps(d, protocol=protocol)))
    assert out[b"labels"] == [1, 2] and out[b"name"] == b"batch"
    np.testing.assert_array_equal(out[b"data"], d[b"data"])
    np.testing.assert_array_equal(out[b"f"], d[b"f"])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _Eval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("obj", [_Evil(), _Eval(), {b"x": _Evil()}])
def test_safe_unpickle_refuses_other_globals(obj):
    payload = pickle.dumps(obj, protocol=2)
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        safe_unpickle(io.BytesIO(payload), "evil.pkl")


def test_safe_unpickle_refuses_codecs_other_than_latin1():
    import _codecs
    class Enc:
        def __reduce__(self):
            return (_codecs.encode, ("x", "rot13"))
    with pytest.raises(DatasetError, match="rot13"):
        safe_unpickle(io.BytesIO(pickle.dumps(Enc(), protocol=2)))


def test_unpickler_uses_bytes_encoding():
    assert isinstance(SafeUnpickler(io.BytesIO(b"")), pickle.Unpickler)
