import os
import time

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """One intra-op thread, restored afterwards: tiny ops run faster on one, and OpenMP with two threads on a
    busy 2-core machine is erratic. Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _networks_one_thread(request):
    """tests/networks builds tiny networks: one thread is faster there. (One conftest for the whole suite:
    test modules import its constants with ``from conftest import ...``, which a second conftest.py would
    shadow.)"""
    if "networks" in request.node.path.parent.parts:
        request.getfixturevalue("one_thread")
    yield


# ------------------------------------------------------------------------------------ waiting on conditions

def wait_until(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition()`` until it returns something truthy and return that; fail the test naming ``what``
    if ``timeout`` seconds pass first. Tests wait on a condition with a deadline, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def process_state(pid: int) -> str:
    """The state letter of process ``pid`` from /proc (``"R"``, ``"S"``, ...); ``"X"`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def is_dead(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie waiting for its parent to reap it)."""
    return process_state(pid) in ("X", "Z")


def child_pids(parent: int) -> set[int]:
    """The live child processes of ``parent`` (from /proc; empty where there is no /proc)."""
    out = set()
    for pid in filter(str.isdigit, os.listdir("/proc")) if os.path.isdir("/proc") else []:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] not in ("Z", "X"):
            out.add(int(pid))
    return out


# ----------------------------------------------------------------------- override lists shared by the tests
# (each test module adds what its runs need: steps, cadences, threads)

#: no progress bar, no TensorBoard
QUIET = ["train.progress=false", "train.tensorboard=false"]
#: a metrics row every step; samples and checkpoints only at the end of a short run
LOG_EVERY_STEP = ["train.log_every=1", "train.sample_every=1000", "train.checkpoint_every=1000"]
#: no evaluation and no diagnostics during training
NO_EVAL = ["train.eval_every=0", "diagnostics.every=0"]
#: on the default ``digits`` preset: 8 px, the narrowest CNNs, batches of 8, quiet
TINY_DIGITS = ["data.resolution=8", "model.width=0.125", "train.batch_size_d=8", "train.batch_size_g=8", *QUIET]
#: the digits CNN setting spelled out (for configs built without a preset): 8 px, narrowest CNNs, 16-d z
DIGITS_CNN = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "model.z_dim=16"]
#: the ring8 mixture with 16-unit MLPs, spelled out (without a preset), batches of 16
RING8_MLP = ["data.name=ring8", "data.options={n: 500}", "model.arch=mlp", "model.z_dim=4",
             "model.d_options={hidden: 16}", "model.g_options={hidden: 16}", "train.batch_size_d=16",
             "train.batch_size_g=16"]
#: on the ``ring8`` preset: 32-unit MLPs, batches of 16, quiet
RING8_32 = [*QUIET, "train.batch_size_d=16", "train.batch_size_g=16", "model.d_options={hidden: 32}",
            "model.g_options={hidden: 32}"]


def listing(root) -> dict[str, tuple[int, int]]:
    """Every file, link and folder under ``root``: relative path -> (size, modification time) of the entry
    itself (links not followed; folders: (-1, 0)). Two equal listings: nothing was written under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (-1, 0) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out
