import numpy as np
import pytest
import torch
from data_fakes import celeba_image, png_bytes, write_zip

from gannorm.data import DatasetError, load_dataset


def _half(chw: np.ndarray) -> np.ndarray:
    x = chw.astype(np.float64).reshape(3, 64, 2, 64, 2).mean(axis=(2, 4))
    return np.floor(x + 0.5).astype(np.uint8)


@pytest.fixture
def imgs():
    return [celeba_image(s) for s in range(3)]


@pytest.fixture
def zip_path(tmp_path, imgs):
    # written out of order: the loader sorts member names
    members = {f"img_align_celeba/{i + 1:06d}.png": png_bytes(imgs[i]) for i in (2, 0, 1)}
    members["img_align_celeba/"] = b""
    return write_zip(tmp_path / "img_align_celeba.zip", members)


def test_crop_offsets_at_128(zip_path, imgs):
    ds = load_dataset("celeba", zip_path, resolution=128)
    assert ds.shape == (3, 128, 128) and len(ds) == 3 and ds.data.dtype == torch.uint8
    for i, img in enumerate(imgs):  # exactly rows 45..172, columns 25..152
        assert torch.equal(ds.data[i], torch.from_numpy(img[45:173, 25:153].transpose(2, 0, 1).copy()))
    assert ds.data[0, :, 0, 0].tolist() == [1, 2, 3] and ds.data[0, :, 127, 127].tolist() == [4, 5, 6]
    assert (ds.data < 255).all()  # nothing from outside the crop (255 there)


def test_default_64_is_the_cv2_linear_reduction(tmp_path, zip_path, imgs):
    for root in (zip_path, tmp_path):
        ds = load_dataset("celeba", root)
        assert ds.shape == (3, 64, 64)
        for i, img in enumerate(imgs):
            assert torch.equal(ds.data[i], torch.from_numpy(_half(img[45:173, 25:153].transpose(2, 0, 1))))
        x = ds.sample(8, torch.Generator().manual_seed(0))
        assert x.shape == (8, 3, 64, 64) and -1 <= x.min() and x.max() <= 1


def test_jpeg_members_and_limit(tmp_path, imgs):
    members = {f"img_align_celeba/{i:06d}.jpg": png_bytes(imgs[i % 3], "JPEG") for i in range(1, 5)}
    ds = load_dataset("celeba", write_zip(tmp_path / "img_align_celeba.zip", members), limit=2)
    assert len(ds) == 2 and ds.shape == (3, 64, 64)
    # JPEG is lossy but close to the source
    ref = torch.from_numpy(_half(imgs[1][45:173, 25:153].transpose(2, 0, 1))).float()
    assert (ds.data[0].float() - ref).abs().mean() < 25


def test_extracted_folder(tmp_path, imgs):
    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    for i, img in enumerate(imgs):
        (folder / f"{i + 1:06d}.png").write_bytes(png_bytes(img))
    for root in (tmp_path, folder):
        ds = load_dataset("celeba", root, resolution=128)
        assert torch.equal(ds.data[2], torch.from_numpy(imgs[2][45:173, 25:153].transpose(2, 0, 1).copy()))


def test_wrong_image_size_is_refused(tmp_path):
    path = write_zip(tmp_path / "c.zip", {"img_align_celeba/1.png": png_bytes(np.zeros((100, 100, 3), np.uint8))})
    with pytest.raises(DatasetError, match="expected the aligned 178x218"):
        load_dataset("celeba", path)


def test_corrupt_image_names_the_member(tmp_path):
    path = write_zip(tmp_path / "c.zip", {"img_align_celeba/000001.jpg": b"not a jpeg"})
    with pytest.raises(DatasetError, match="000001.jpg"):
        load_dataset("celeba", path)


@pytest.mark.parametrize("evil", ["../evil.jpg", "/abs/evil.jpg", "img_align_celeba/../../x.jpg"])
def test_evil_member_is_refused(tmp_path, imgs, evil):
    path = write_zip(tmp_path / "c.zip", {"img_align_celeba/000001.png": png_bytes(imgs[0]), evil: b"x"})
    with pytest.raises(DatasetError, match="refusing archive member"):
        load_dataset("celeba", path)


def test_missing_and_bad_files(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("celeba", tmp_path)
    assert "img_align_celeba.zip" in str(e.value) and "mmlab.ie.cuhk.edu.hk" in str(e.value)
    bad = tmp_path / "img_align_celeba.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("celeba", tmp_path)
    empty = write_zip(tmp_path / "e.zip", {"readme.txt": b"x"})
    with pytest.raises(DatasetError, match="no .jpg images"):
        load_dataset("celeba", empty)


def test_resolution(zip_path):
    with pytest.raises(DatasetError, match="allowed: 64, 128"):
        load_dataset("celeba", zip_path, resolution=32)
