"""Lazy datasets: the same pixels and the same draws as in memory, workers that start, serve and stop."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import is_dead, wait_until
from data_fakes import celeba_image, children, png_bytes, stl_bytes, stl_images, write_zip

from gannorm.data import Dataset, DatasetError, LazyDataset, load_dataset
from gannorm.data import lazy
from gannorm.data.lazy import StringTable
from gannorm.data.lookahead import Lookahead, find_gap, generator_at, next_gap

pytestmark = pytest.mark.usefixtures("one_thread")
LINUX = sys.platform.startswith("linux")


def _draw_like_a_trainer(ds, gen, calls, n=8, period=3):
    """``calls`` batches, with the caller's own draws (flips, z) between them in a repeating pattern."""
    out = []
    for c in range(calls):
        out.append(ds.sample(n, gen))
        torch.rand(n, generator=gen)
        torch.randn(n, 16 * (2 if c % period == period - 1 else 1), generator=gen)
    return out


# ------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for i in range(23):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        size = (int(rng.integers(9, 30)), int(rng.integers(9, 30)))  # odd shapes: crops and resizes differ
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(sub / f"{i:03d}.png")
    return root


@pytest.fixture
def npy_file(tmp_path):
    arr = np.random.default_rng(1).uniform(0, 1, size=(17, 13, 11, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", arr)
    return tmp_path / "x.npy"


@pytest.fixture
def celeba_zip(tmp_path):
    members = {f"img_align_celeba/{i + 1:06d}.png": png_bytes(celeba_image(i)) for i in (4, 0, 3, 1, 2)}
    return write_zip(tmp_path / "img_align_celeba.zip", members)


@pytest.fixture
def celeba_folder(tmp_path):
    folder = tmp_path / "c" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(5):
        (folder / f"{i:06d}.png").write_bytes(png_bytes(celeba_image(10 + i)))
    return folder.parent


@pytest.fixture
def stl_root(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "unlabeled_X.bin").write_bytes(stl_bytes(stl_images(7)))
    return tmp_path


CASES = {  # name -> (dataset, fixture, resolution, options)
    "imagefolder": ("imagefolder", "folder", 12, {}),
    "imagefolder-gray": ("imagefolder", "folder", 7, {"channels": 1, "limit": 20}),
    "npy-resized": ("npy", "npy_file", 6, {}),
    "npy-native": ("npy", "npy_file", None, {"value_range": "[0,1]"}),
    "celeba-zip": ("celeba", "celeba_zip", 64, {}),
    "celeba-folder": ("celeba", "celeba_folder", 64, {}),
    "stl10": ("stl10", "stl_root", 48, {}),
}


# ------------------------------------------------------------------------------ same pixels, same draws

@pytest.mark.parametrize("case", sorted(CASES))
def test_lazy_is_bitwise_the_in_memory_dataset(case, request):
    name, fixture, res, options = CASES[case]
    root = request.getfixturevalue(fixture)
    mem = load_dataset(name, root, res, in_memory=True, **options)
    workers = 2 if case == "imagefolder" else 0 if case == "npy-native" else 1
    with load_dataset(name, root, res, in_memory=False, workers=workers, **options) as ds:
        assert isinstance(mem, Dataset) and isinstance(ds, LazyDataset) and not ds.in_memory
        assert (ds.name, ds.kind, ds.shape, len(ds), ds.labels, ds.source) == \
            (mem.name, mem.kind, mem.shape, len(mem), None, mem.source)
        idx = torch.tensor([len(mem) - 1, 0, 3, 3, -1, 2])
        assert torch.equal(ds.get(idx), mem.get(idx))
        assert torch.equal(ds.get(torch.arange(len(mem))), mem.get(torch.arange(len(mem))))
        g_mem, g_lazy = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        for a, b in zip(_draw_like_a_trainer(mem, g_mem, 9), _draw_like_a_trainer(ds, g_lazy, 9)):
            assert torch.equal(a, b)
        assert torch.equal(g_mem.get_state(), g_lazy.get_state())  # the caller's stream moved the same
        if workers:
            assert ds.stats.batches == 9 and ds.stats.prefetched >= 3  # decoded ahead once the pattern was learnt


def test_rows_decode_only_a_shard(folder):
    mem = load_dataset("imagefolder", folder, 8)
    with load_dataset("imagefolder", folder, 8, in_memory=False, workers=1) as ds:
        full = mem.sample(8, torch.Generator().manual_seed(3))
        part = ds.sample(8, torch.Generator().manual_seed(3), rows=torch.tensor([4, 5, 6, 7]))
        assert torch.equal(part[4:], full[4:]) and (part[:4] == 0).all()
        assert torch.equal(mem.sample(8, torch.Generator().manual_seed(3), rows=[0]), full)  # in memory: all rows


def test_out_of_range_and_no_array(folder):
    with load_dataset("imagefolder", folder, 8, in_memory=False, workers=0) as ds:
        with pytest.raises(IndexError, match="out of range for 23"):
            ds.get([23])
        with pytest.raises(DatasetError, match="holds no image array.*in_memory=true"):
            _ = ds.data
        assert ds.get([]).shape == (0, 3, 8, 8)


# ------------------------------------------------------------------------------- choosing and errors

def test_auto_reads_lazily_above_the_limit(folder, monkeypatch):
    assert isinstance(load_dataset("imagefolder", folder, 8), Dataset)  # 23 * 192 bytes: in memory
    monkeypatch.setattr(lazy, "AUTO_LIMIT", 23 * 192 - 1)
    ds = load_dataset("imagefolder", folder, 8, workers=0)
    assert isinstance(ds, LazyDataset) and lazy.auto_limit() == 23 * 192 - 1
    assert isinstance(load_dataset("imagefolder", folder, 8, in_memory=True), Dataset)
    monkeypatch.setattr(lazy, "total_memory", lambda: 8 * 1000)  # a quarter of the memory, if less
    assert lazy.auto_limit() == 2000


def test_in_memory_false_where_only_memory_works(tmp_path, stl_root):
    with pytest.raises(DatasetError, match="digits: .*cannot be read lazily.*data.in_memory=auto"):
        load_dataset("digits", in_memory=False)
    import tarfile
    with tarfile.open(tmp_path / "stl10_binary.tar.gz", "w:gz") as tar:
        tar.add(stl_root / "stl10_binary" / "unlabeled_X.bin", "stl10_binary/unlabeled_X.bin")
    with pytest.raises(DatasetError, match="stl10: .*stl10_binary.tar.gz cannot be read lazily"):
        load_dataset("stl10", tmp_path / "stl10_binary.tar.gz", in_memory=False)
    assert isinstance(load_dataset("ring8", in_memory=True), Dataset)


@pytest.mark.parametrize("kw, match", [({"in_memory": "no"}, "in_memory must be auto, true or false"),
                                       ({"in_memory": 0}, "in_memory must be"),
                                       ({"workers": -1}, "workers must be a non-negative integer"),
                                       ({"workers": 1.5}, "workers must be"), ({"workers": True}, "workers must be")])
def test_bad_choices_are_one_line_errors(folder, kw, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("imagefolder", folder, 8, **kw)


def test_a_broken_file_is_reported_when_drawn(folder):
    (folder / "a" / "zzz.png").write_bytes(b"not a png")
    with load_dataset("imagefolder", folder, 8, in_memory=False, workers=1) as ds:  # listing does not decode
        assert len(ds) == 24
        ds.get([0])
        with pytest.raises(DatasetError, match="imagefolder: cannot read .*zzz.png"):
            ds.get([11])  # sorted: a/001.png ... a/021.png, then a/zzz.png
    with pytest.raises(DatasetError, match="zzz.png"):
        load_dataset("imagefolder", folder, 8)  # in memory: when loading


def test_string_table_and_readers_pickle(celeba_zip, tmp_path):
    names = ["a/b.png", "ü/ñ.jpg", "", "x" * 300, os.fsdecode(b"bad\xff.png")]
    table = StringTable(names)
    assert [table[i] for i in range(len(table))] == names and table[-1] == names[-1] and len(table) == 5
    with pytest.raises(IndexError):
        table[5]
    ds = load_dataset("celeba", celeba_zip, in_memory=False, workers=0)
    first = ds.get([1, 0])  # opens the zip in this process
    reader = pickle.loads(pickle.dumps(ds.reader))  # as a spawned worker gets it: without the open zip
    assert torch.equal(ds.get([1, 0]), first) and reader._zip is None
    assert torch.equal(reader.read(np.array([1, 0])).float() / 127.5 - 1, first)


# ------------------------------------------------------------------------------------ the lookahead

def test_find_gap_counts_the_draws_in_between():
    gen = torch.Generator().manual_seed(0)
    start = gen.get_state()
    torch.rand(64, generator=gen)             # 64 float32 uniforms: one 32-bit output each
    torch.randn(32, 7, generator=gen)         # 224 normals (a multiple of 16: one output each)
    torch.randint(10, (5,), generator=gen)    # 5 integers below 2**32
    torch.randint(2 ** 40, (3,), generator=gen)  # 3 integers from 64 bits: 2 outputs each
    assert find_gap(start, gen.get_state()) == 64 + 224 + 5 + 6
    assert torch.equal(generator_at(start, 299).get_state(), gen.get_state())
    assert find_gap(start, start) == 0
    assert find_gap(gen.get_state(), start, limit=1 << 18) is None  # backwards: not found
    middle = gen.get_state()
    torch.randn(33, 7, generator=gen)  # whatever torch consumes for it, the gap reproduces the state
    assert torch.equal(generator_at(middle, find_gap(middle, gen.get_state())).get_state(), gen.get_state())


@pytest.mark.parametrize("gaps, expected", [([], None), ([5], 5), ([5, 5], 5), ([5, 5, 9], 9),
                                            ([5, 5, 5, 5, 9, 5, 5, 5, 5, 9, 5], 5),
                                            ([5, 5, 5, 5, 9, 5, 5, 5, 5], 9), ([1, 2, 3, 1, 2], 3)])
def test_next_gap_follows_a_period(gaps, expected):
    assert next_gap(gaps) == expected


def test_lookahead_guesses_the_next_draw():
    ahead, gen = Lookahead(), torch.Generator().manual_seed(4)
    hits = 0
    for c in range(30):
        guess = ahead.guess(gen, 6, 1000)
        before = gen.get_state()
        idx = torch.randint(1000, (6,), generator=gen)
        hits += guess is not None and torch.equal(guess[1], idx)
        ahead.drew(gen, before, None)
        torch.randn(40 + (100 if c % 4 == 3 else 0), generator=gen)  # a period of 4 draws
    assert hits >= 30 - 2 - 8  # wrong only before the pattern is known (two periods)
    other = torch.Generator().manual_seed(4)
    assert ahead.guess(other, 6, 1000) is None  # another generator: nothing known


# ---------------------------------------------------------------------------------------- workers

@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_workers_start_on_demand_and_stop_on_close(folder):
    before = children()
    ds = load_dataset("imagefolder", folder, 8, in_memory=False, workers=2)
    assert children() == before  # nothing started by loading
    ds.sample(4, torch.Generator().manual_seed(0))
    workers = children() - before
    assert len(workers) == 2
    ds.close()
    assert children() == before
    ds.sample(4, torch.Generator().manual_seed(0))  # usable again: new workers
    assert len(children() - before) == 2
    del ds  # garbage-collected: stopped too
    wait_until(lambda: children() == before, 10, "the workers of a garbage-collected dataset to stop")


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_a_dead_worker_is_a_clear_error(folder):
    before = children()
    with load_dataset("imagefolder", folder, 8, in_memory=False, workers=1) as ds:
        ds.get([0])
        killed = children() - before
        assert killed
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: all(is_dead(pid) for pid in killed), 10, "the killed worker to die")
        with pytest.raises(DatasetError, match="data worker process died.*data.workers"):
            ds.get([0, 1])
    assert children() == before


@pytest.mark.skipif(not LINUX, reason="reads /proc")
def test_workers_ignore_ctrl_c_and_exit_when_the_main_process_dies(folder, tmp_path):
    """Ctrl-C reaches the whole process group: the workers keep serving (the main process decides); a main
    process killed outright leaves no worker behind."""
    script = textwrap.dedent(f"""
        import os, signal, sys, time, torch
        from gannorm.data import load_dataset
        ds = load_dataset("imagefolder", {str(folder)!r}, 8, in_memory=False, workers=2)
        ds.sample(4, torch.Generator().manual_seed(0))
        pids = [int(p) for p in os.listdir("/proc")
                if p.isdigit() and open(f"/proc/{{p}}/stat").read().rsplit(")", 1)[1].split()[1] == str(os.getpid())]
        BIT = 1 << (signal.SIGINT - 1)
        def masks(pid):
            rows = dict(line.split(":", 1) for line in open(f"/proc/{{pid}}/status").read().splitlines() if ":" in line)
            return {{k: int(rows[k], 16) & BIT for k in ("SigIgn", "SigPnd", "ShdPnd")}}
        assert all(masks(pid)["SigIgn"] for pid in pids), "a worker does not ignore SIGINT"
        for pid in pids:
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30  # the signals were dealt with: none is pending any more
        while any(masks(pid)["SigPnd"] or masks(pid)["ShdPnd"] for pid in pids):
            assert time.monotonic() < deadline, "a SIGINT stayed pending"
            time.sleep(0.01)
        assert ds.get([1]).shape == (1, 3, 8, 8)
        print(" ".join(map(str, pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    wait_until(lambda: all(is_dead(p) for p in pids), 10, f"the workers {pids} to end with their main process")


def test_spawned_workers_give_the_same_pixels(folder, monkeypatch):
    from gannorm.data import pool
    monkeypatch.setattr(pool, "START_METHOD", "spawn")  # macOS and Windows: the reader is pickled to each worker
    mem = load_dataset("imagefolder", folder, 8)
    with load_dataset("imagefolder", folder, 8, in_memory=False, workers=1) as ds:
        assert torch.equal(ds.get([5, 1, 5]), mem.get([5, 1, 5]))
