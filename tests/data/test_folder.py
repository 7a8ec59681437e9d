
import numpy as np
import pytest
import torch

from gannorm.data import DatasetError, load_dataset

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def _solid(path, size, color, mode="RGB", fmt=None):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path, format=fmt)
    return path


# ------------------------------------------------------------------------------------- imagefolder

@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    _solid(root / "b" / "z.png", (20, 30), GREEN)
    _solid(root / "a.JPG", (40, 40), RED, fmt="JPEG")
    _solid(root / "b" / "c.bmp", (10, 10), BLUE)
    _solid(root / "b" / "d.webp", (12, 9), (10, 20, 30), fmt="WEBP")
    _solid(root / "e.png", (16, 16), (255, 0, 0, 0), mode="RGBA")
    (root / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_recursive_sorted_rgb(folder):
    ds = load_dataset("imagefolder", folder, resolution=8)
    assert ds.kind == "image" and ds.shape == (3, 8, 8) and len(ds) == 5 and ds.labels is None
    means = ds.data.float().mean(dim=(2, 3))  # order: a.JPG, b/c.bmp, b/d.webp, b/z.png, e.png
    expected = torch.tensor([RED, BLUE, (10, 20, 30), GREEN, RED], dtype=torch.float32)
    assert (means - expected).abs().max() < 4  # JPEG/WEBP are lossy
    x = ds.get([0, 4])
    assert x.shape == (2, 3, 8, 8) and x.min() >= -1 and x.max() <= 1


def test_imagefolder_center_crop(tmp_path):
    from PIL import Image
    arr = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: the centre square is columns 10..29
    arr[:, :10] = BLUE
    arr[:, 10:30] = RED
    arr[:, 30:] = BLUE
    Image.fromarray(arr).save(tmp_path / "wide.png")
    arr = np.zeros((41, 20, 3), np.uint8)  # 20 wide, 41 high: rows 10..29
    arr[10:30] = RED
    Image.fromarray(arr).save(tmp_path / "tall.png")
    ds = load_dataset("imagefolder", tmp_path, resolution=10)
    red = torch.tensor(RED, dtype=torch.uint8)[:, None, None].expand(3, 10, 10)
    assert torch.equal(ds.data[0], red) and torch.equal(ds.data[1], red)


def test_imagefolder_grayscale_and_limit(folder):
    ds = load_dataset("imagefolder", folder, resolution=4, channels=1, limit=2)
    assert ds.shape == (1, 4, 4) and len(ds) == 2
    assert abs(float(ds.data[1].float().mean()) - 29) < 2  # Pillow's L of pure blue: 0.114 * 255


def test_imagefolder_errors(tmp_path, folder):
    with pytest.raises(DatasetError, match="resolution is required"):
        load_dataset("imagefolder", folder)
    with pytest.raises(DatasetError, match="^imagefolder: option channels must be one of 1, 3, got 4$"):
        load_dataset("imagefolder", folder, resolution=8, channels=4)
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset("imagefolder", _empty(tmp_path), resolution=8)
    with pytest.raises(DatasetError, match="expected a folder"):
        load_dataset("imagefolder", tmp_path / "missing", resolution=8)
    (folder / "broken.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset("imagefolder", folder, resolution=8)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    (d / "x.txt").write_text("x")
    return d


# --------------------------------------------------------------------------------------------- npy

def test_npy_uint8_nhwc(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, size=(6, 5, 7, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    ds = load_dataset("npy", tmp_path / "a.npy")
    assert ds.shape == (3, 5, 7) and len(ds) == 6  # native size kept without a resolution
    assert torch.equal(ds.data, torch.from_numpy(arr).permute(0, 3, 1, 2))
    assert torch.equal(ds.get([1]), torch.from_numpy(arr[1:2]).permute(0, 3, 1, 2).float() / 127.5 - 1)


def test_npy_nhw_is_one_channel_and_resizes(tmp_path):
    arr = np.zeros((4, 8, 12), np.uint8)
    arr[:, :, 2:10] = 200  # the centre square (columns 2..9) is uniform
    np.save(tmp_path / "g.npy", arr)
    ds = load_dataset("npy", str(tmp_path / "g.npy"), resolution=4)
    assert ds.shape == (1, 4, 4) and (ds.data == 200).all()
    assert load_dataset("npy", tmp_path / "g.npy", limit=3).shape == (1, 8, 12)
    assert len(load_dataset("npy", tmp_path / "g.npy", limit=3)) == 3


@pytest.mark.parametrize("lo, hi, scale", [(0.0, 1.0, lambda x: x * 255), (-1.0, 1.0, lambda x: (x + 1) * 127.5)])
def test_npy_float_ranges_are_detected(tmp_path, lo, hi, scale):
    arr = np.random.default_rng(1).uniform(lo, hi, size=(3, 4, 4, 1)).astype(np.float32)
    arr[0, 0, 0, 0], arr[0, 0, 1, 0] = lo, hi
    np.save(tmp_path / "f.npy", arr)
    ds = load_dataset("npy", tmp_path / "f.npy")
    expected = np.floor(scale(arr.astype(np.float64)) + 0.5).transpose(0, 3, 1, 2)
    assert np.abs(ds.data.numpy().astype(np.float64) - expected).max() <= 1
    assert ds.data[0, 0, 0, 0] == 0 and ds.data[0, 0, 0, 1] == 255


def test_npy_value_range_override(tmp_path):
    arr = np.full((2, 3, 3, 3), 0.0, np.float32)  # a [-1, 1] array without negatives
    np.save(tmp_path / "f.npy", arr)
    assert (load_dataset("npy", tmp_path / "f.npy").data == 0).all()
    assert (load_dataset("npy", tmp_path / "f.npy", value_range="[-1,1]").data == 128).all()
    with pytest.raises(DatasetError, match="value_range must be one of"):
        load_dataset("npy", tmp_path / "f.npy", value_range="bogus")


def test_npy_errors(tmp_path):
    np.save(tmp_path / "big.npy", np.full((2, 4, 4, 3), 3.0, np.float32))
    with pytest.raises(DatasetError, match=r"outside the detected range \[0,1\]"):
        load_dataset("npy", tmp_path / "big.npy")
    np.save(tmp_path / "chw.npy", np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(DatasetError, match="channels-first"):
        load_dataset("npy", tmp_path / "chw.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("npy", tmp_path / "obj.npy")
    with pytest.raises(DatasetError, match="expected a .npy file.*missing.npy"):
        load_dataset("npy", tmp_path / "missing.npy")
    np.save(tmp_path / "neg.npy", np.full((1, 2, 2), -3, np.int16))
    with pytest.raises(DatasetError, match="outside"):
        load_dataset("npy", tmp_path / "neg.npy")
    np.savez(tmp_path / "z.npz", a=np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(DatasetError, match="not a single .npy array"):
        load_dataset("npy", tmp_path / "z.npz")
    with pytest.raises(DatasetError, match="no data root"):
        load_dataset("npy")
