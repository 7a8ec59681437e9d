"""``celebahq``: a folder of square faces, antialiased down to the resolution, never enlarged, lazily too."""
import numpy as np
import pytest
import torch

from gannorm.data import DATASETS, Dataset, DatasetError, LazyDataset, load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def _png(path, arr):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _lines(side, period=4):
    """A bright row every ``period`` rows: antialiasing averages it in; point sampling would miss it."""
    arr = np.zeros((side, side, 3), np.uint8)
    arr[::period] = 255
    return arr


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / "celeba_hq"
    rng = np.random.default_rng(0)
    for i in range(5):
        _png(root / f"{i:05d}.png", rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    return root


def test_registered_with_its_resolutions():
    fn = DATASETS.get("celebahq")
    assert fn.resolutions == (64, 128, 256, 512, 1024) and fn.default_resolution == 256 and fn.labels is None
    entry = next(e for e in DATASETS.entries() if e.name == "celebahq")
    assert "CelebA-HQ" in entry.description and "never enlarged" in entry.description


def test_resizes_with_antialiasing(tmp_path):
    _png(tmp_path / "f" / "a.png", _lines(256))
    ds = load_dataset("celebahq", tmp_path / "f", 64)
    assert ds.shape == (3, 64, 64) and len(ds) == 1 and ds.labels is None and ds.num_classes == 0
    # the mean brightness is kept (a quarter of the rows are 255), not lost by point sampling
    assert abs(float(ds.data.float().mean()) - 255 / 4) < 4
    assert int(ds.data.min()) > 20  # every output row saw a bright row
    # Pillow's own antialiased bilinear resize (the imagefolder decoder) gives these pixels
    from PIL import Image
    ref = np.asarray(Image.fromarray(_lines(256)).resize((64, 64), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(ds.data[0].numpy(), ref)


def test_default_resolution_and_same_size(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    _png(tmp_path / "f" / "x.png", arr)
    ds = load_dataset("celebahq", tmp_path / "f")
    assert ds.shape == (3, 256, 256) and torch.equal(ds.data[0], torch.from_numpy(arr).permute(2, 0, 1))


def test_picks_the_smallest_sized_folder_that_suffices(tmp_path):
    for side, value in ((64, 10), (128, 20), (32, 30)):
        _png(tmp_path / f"data{side}x{side}" / "00001.png", np.full((side, side, 3), value, np.uint8))
    assert (load_dataset("celebahq", tmp_path, 64).data == 10).all()
    assert (load_dataset("celebahq", tmp_path, 128).data == 20).all()
    with pytest.raises(DatasetError, match=r"largest images in .* are data128x128, smaller than resolution 256.*"
                                           r"data.resolution=128 or less"):
        load_dataset("celebahq", tmp_path)


def test_no_upscaling_and_square_only(tmp_path, faces):
    with pytest.raises(DatasetError, match=r"00000.png is 128x128, smaller than resolution 256 .*never enlarged.*"
                                           r"data.resolution=128"):
        load_dataset("celebahq", faces)
    _png(tmp_path / "wide" / "a.png", np.zeros((128, 160, 3), np.uint8))
    with pytest.raises(DatasetError, match="a.png is 160x128, not square"):
        load_dataset("celebahq", tmp_path / "wide", 64)
    with pytest.raises(DatasetError, match="allowed: 64, 128, 256, 512, 1024"):
        load_dataset("celebahq", faces, 32)
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset("celebahq", _empty(tmp_path), 64)
    with pytest.raises(DatasetError, match="no data root"):
        load_dataset("celebahq")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_limit_and_labels_are_absent(faces):
    ds = load_dataset("celebahq", faces, 64, limit=3)
    assert len(ds) == 3 and ds.class_counts().shape == (0,)
    with pytest.raises(DatasetError, match="celebahq: this dataset has no labels"):
        ds.sample_labelled(2, torch.Generator())


def test_lazy_is_bitwise_in_memory_and_checks_each_image(faces):
    mem = load_dataset("celebahq", faces, 64, in_memory=True)
    assert isinstance(mem, Dataset)
    assert torch.equal(mem.data, load_dataset("imagefolder", faces, 64).data)  # the imagefolder decoder
    with load_dataset("celebahq", faces, 64, in_memory=False, workers=1) as ds:
        assert isinstance(ds, LazyDataset) and ds.name == "celebahq"
        g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        for _ in range(3):
            assert torch.equal(mem.sample(4, g1), ds.sample(4, g2))
    _png(faces / "00009.png", np.zeros((48, 48, 3), np.uint8))  # the first image is fine; this one is not
    with load_dataset("celebahq", faces, 64, in_memory=False, workers=0) as ds:
        with pytest.raises(DatasetError, match="00009.png is 48x48, smaller than resolution 64"):
            ds.get([5])
