"""The sides of ``gannorm metrics``: image folders, arrays, statistics files, and their one-line errors."""
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from gannorm.app.metric_inputs import (ARRAY, FOLDER, STATISTICS, array_layout, array_range, array_to_uint8,
                                       open_source)
from gannorm.errors import GannormError, InputError
from gannorm.runfolder import CHECKPOINT, MARKERS
from gannorm.metrics.evaluate import statistics_precision, statistics_resize
from gannorm.metrics.frechet import save_statistics


def rgb(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape, layout", [((5, 8, 8, 3), "NHWC"), ((5, 8, 8, 1), "NHWC"), ((5, 3, 8, 8), "NCHW"),
                                           ((5, 1, 9, 7), "NCHW"), ((5, 8, 8), "NHW"), ((2, 3, 8, 3), "NHWC")])
def test_array_layout(shape, layout):
    assert array_layout(shape) == layout


@pytest.mark.parametrize("shape", [(5, 8, 8, 4), (5, 4, 8, 8), (8, 8), (0, 8, 8, 3), (5, 8, 8, 3, 1)])
def test_array_layout_refuses_other_shapes(shape):
    with pytest.raises(InputError, match=r"expected images \[N, H, W, C\] or \[N, C, H, W\]"):
        array_layout(shape)


def test_array_range_rules_and_errors():
    assert array_range(np.dtype(np.uint8), 0, 255) == "[0,255]"
    assert array_range(np.dtype(np.int64), 3, 200) == "[0,255]"
    assert array_range(np.dtype(np.float32), 0.0, 1.0) == "[0,1]"
    assert array_range(np.dtype(np.float64), -0.1, 0.5) == "[-1,1]"
    for dtype, lo, hi, text in [(np.int16, -1, 5, r"outside \[0,255\]"), (np.float32, 0, 1.5, r"outside \[0,1\]"),
                                (np.float32, -1.5, 0, r"outside \[-1,1\]"), (np.float32, np.nan, 1, "NaN"),
                                (np.bool_, 0, 1, "dtype bool")]:
        with pytest.raises(InputError, match=text):
            array_range(np.dtype(dtype), lo, hi)


def test_array_to_uint8_maps_each_range_back_to_the_same_pixels():
    u = np.random.default_rng(0).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    want = torch.from_numpy(u.transpose(0, 3, 1, 2).copy())
    assert torch.equal(array_to_uint8(u, "NHWC", "[0,255]"), want)
    assert torch.equal(array_to_uint8(u.transpose(0, 3, 1, 2), "NCHW", "[0,255]"), want)
    assert torch.equal(array_to_uint8(u.astype(np.float32) / 255, "NHWC", "[0,1]"), want)
    assert torch.equal(array_to_uint8(u.astype(np.float32) / 127.5 - 1, "NHWC", "[-1,1]"), want)
    gray = u[..., 0]
    assert torch.equal(array_to_uint8(gray, "NHW", "[0,255]"), want[:, :1])


def test_folder_reads_every_image_recursively_as_rgb_at_its_own_size(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    a, b = rgb(rng, 8, 8), rgb(rng, 12, 5)
    gray = rng.integers(0, 256, (7, 7), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(b).save(tmp_path / "sub" / "b.png")
    Image.fromarray(gray, mode="L").save(tmp_path / "sub" / "deeper" / "c.png")
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(tmp_path, batch_size=2)
    assert (src.kind, src.count, src.unit) == (FOLDER, 3, 2)
    images = src.read(0, 3)  # sorted by relative path: a.png, sub/b.png, sub/deeper/c.png
    assert [tuple(x.shape) for x in images] == [(3, 8, 8), (3, 12, 5), (3, 7, 7)]
    assert np.array_equal(images[0].permute(1, 2, 0).numpy(), a)
    assert np.array_equal(images[1].permute(1, 2, 0).numpy(), b)
    assert all(np.array_equal(images[2][k].numpy(), gray) for k in range(3))  # L -> RGB repeats the channel


def test_arrays_npy_npz_and_a_samples_key(tmp_path):
    u = np.random.default_rng(2).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", u)
    np.savez(tmp_path / "one.npz", anything=u.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    np.savez(tmp_path / "samples.npz", samples=u, other=np.zeros(3))
    want = torch.from_numpy(u.transpose(0, 3, 1, 2).copy())
    for name in ("x.npy", "one.npz", "samples.npz"):
        src = open_source(tmp_path / name, batch_size=4)
        assert (src.kind, src.count) == (ARRAY, 6)
        assert torch.equal(src.read(1, 5), want[1:5]), name


def test_statistics_file(tmp_path):
    save_statistics(tmp_path / "s.npz", np.arange(3.0), np.eye(3))
    src = open_source(tmp_path / "s.npz")
    assert src.kind == STATISTICS and not src.images and src.count == 0
    assert np.array_equal(src.statistics[0], np.arange(3.0)) and np.array_equal(src.statistics[1], np.eye(3))


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4, 4, 3)), b=np.zeros((2, 4, 4, 3)))
    np.save(tmp_path / "rgba.npy", np.zeros((2, 4, 4, 4), np.uint8))
    (tmp_path / "x.txt").write_text("hello")
    cases = [(tmp_path / "empty", "holds no image files"), (tmp_path / "missing", "does not exist"),
             (tmp_path / "two.npz", "holds the arrays a, b"), (tmp_path / "rgba.npy", "has shape"),
             (tmp_path / "x.txt", "is not a folder of images")]
    for path, text in cases:
        with pytest.raises(InputError, match=text) as info:
            open_source(path)
        assert "\n" not in str(info.value)
    src = open_source(tmp_path / "broken")
    with pytest.raises(InputError, match="not a readable image"):
        src.read(0, 1)


@pytest.mark.parametrize("marker", MARKERS)
def test_a_folder_with_any_run_marker_is_a_run_folder(tmp_path, marker):
    run = tmp_path / "run"
    run.mkdir()
    (run / marker).write_text("x: 1\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run / "samples_step100.png")  # a sample grid
    if marker == CHECKPOINT:
        with pytest.raises(GannormError) as info:  # a checkpoint that is not one: the run's own error
            open_source(run)
        assert "checkpoint" in str(info.value)
    else:
        with pytest.raises(GannormError, match=r"has no checkpoint\.pt") as info:
            open_source(run)
    assert "\n" not in str(info.value)


def test_a_plain_npy_named_npz_is_read_as_an_array(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", pixels)
    (tmp_path / "x.npy").rename(tmp_path / "x.npz")
    src = open_source(tmp_path / "x.npz")
    assert src.kind == ARRAY and src.count == 3
    assert np.array_equal(src.read(0, 3).numpy(), pixels.transpose(0, 3, 1, 2))
    assert statistics_precision(tmp_path / "x.npz") is None and statistics_resize(tmp_path / "x.npz") is None


def npy_header(shape, dtype):
    """A version 1.0 .npy header claiming ``shape`` of ``dtype``, whatever data follows it."""
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (dtype, tuple(shape))
    text += " " * (63 - (10 + len(text)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()


def test_an_npz_member_claiming_a_huge_shape_is_refused_from_its_header(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as z:
        z.writestr("x.npy", npy_header((10**6, 4096, 4096, 3), "<f4") + b"\0" * 100)
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as z:
        z.writestr("mu.npy", npy_header((10**12,), "<f8") + b"\0" * 100)
        z.writestr("sigma.npy", npy_header((10**12, 10**12), "<f8") + b"\0" * 100)
    # numpy is never asked for the claimed bytes (it would raise MemoryError or try to allocate them)
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", lambda *a: pytest.fail("the header refuses it"))
    for name, text in [("x.npz", r"array 'x' claims shape \(1000000, 4096, 4096, 3\) of float32"),
                       ("s.npz", r"array 'mu' claims shape \(1000000000000,\) of float64")]:
        with pytest.raises(InputError, match=text) as info:
            open_source(tmp_path / name)
        assert "\n" not in str(info.value) and "member holds 228 bytes" in str(info.value)


def test_an_array_or_statistics_that_do_not_fit_in_memory_are_one_line_errors(tmp_path, monkeypatch):
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 4, 4, 3), np.uint8))
    save_statistics(tmp_path / "s.npz", np.zeros(3), np.eye(3))

    def out_of_memory(*args):
        raise MemoryError("Unable to allocate 183. TiB")
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", out_of_memory)
    for name, text in [("x.npz", "its array does not fit in memory"), ("s.npz", "statistics do not fit in memory")]:
        with pytest.raises(InputError, match=text) as info:
            open_source(tmp_path / name)
        assert "\n" not in str(info.value)


def test_an_npz_member_of_the_right_size_passes_the_header_check(tmp_path):
    pixels = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.savez_compressed(tmp_path / "x.npz", samples=pixels)
    assert np.array_equal(open_source(tmp_path / "x.npz").read(0, 2).numpy(), pixels.transpose(0, 3, 1, 2))


def test_a_16_bit_grayscale_png_is_scaled_to_8_bits(tmp_path):
    wide = np.random.default_rng(2).integers(0, 65536, (6, 5), dtype=np.uint16)
    wide[0, :3] = [0, 65535, 257 * 100]
    (tmp_path / "g").mkdir()
    Image.fromarray(wide).save(tmp_path / "g" / "a.png")
    with Image.open(tmp_path / "g" / "a.png") as im:
        assert im.mode in ("I;16", "I")  # what PIL writes and reads back for 16 bits
    got = open_source(tmp_path / "g").read(0, 1)[0].numpy()
    want = np.floor(wide / 257.0 + 0.5)  # 65535 / 255 = 257: the hand rule, 0 -> 0, 65535 -> 255
    assert np.array_equal(got, np.broadcast_to(want, (3, 6, 5)))
    assert got[0, 0, :3].tolist() == [0, 255, 100]
    assert got.mean() == pytest.approx(want.mean()) and want.mean() > 60
