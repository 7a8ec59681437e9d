"""gannorm.training.checkpointing and gannorm.training.signals on their own: a checkpoint dict restores every object
bitwise into freshly built ones, and the stop request and its handlers behave as the trainer relies on."""
import os
import signal
import threading

import pytest
import torch
from torch import nn

from gannorm.errors import GannormError
from gannorm.runfolder import BestRecord, RunFolder, load_checkpoint
from gannorm.training import checkpointing as ck
from gannorm.training.ema import EMA
from gannorm.training.signals import STOP_SIGNALS, StopRequest


def objects(seed, ema=True):
    torch.manual_seed(seed)
    G, D = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), nn.Linear(2, 1)
    return ck.TrainingObjects(G, D, torch.optim.Adam(G.parameters(), lr=1e-3),
                              torch.optim.Adam(D.parameters(), lr=1e-3), torch.Generator().manual_seed(seed),
                              EMA(G, 0.9, 0, "copy") if ema else None)


def train_a_little(o):
    for _ in range(3):
        x = torch.randn(8, 3, generator=o.rng)
        for opt, loss in ((o.opt_g, o.D(o.G(x)).mean()), (o.opt_d, -o.D(o.G(x).detach()).mean())):
            opt.zero_grad()
            loss.backward()
            opt.step()
        o.ema.update(o.G, 1)


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_capture_then_restore_gives_back_every_object_and_the_progress(tmp_path):
    live = objects(0)
    train_a_little(live)
    progress = ck.Progress(7, 35, torch.get_rng_state(), torch.randn(4, 3))
    state = ck.capture(live, progress, {"train": {"n_dis": 5}}, (3,))
    folder = RunFolder.create(tmp_path, "run")
    ck.save(folder, state)
    fresh = objects(1)  # other weights, other moments, another generator state
    back = ck.restore(fresh, load_checkpoint(folder.checkpoint), folder.checkpoint, n_dis=5)
    assert (back.step, back.d_steps) == (7, 35)
    assert torch.equal(back.torch_rng, progress.torch_rng) and torch.equal(back.fixed_z, progress.fixed_z)
    for a, b in ((live.G, fresh.G), (live.D, fresh.D), (live.ema.model, fresh.ema.model)):
        assert same(a.state_dict(), b.state_dict())
    assert same(live.opt_g.state_dict(), fresh.opt_g.state_dict())
    assert same(live.opt_d.state_dict(), fresh.opt_d.state_dict())
    assert torch.equal(torch.randn(5, generator=live.rng), torch.randn(5, generator=fresh.rng))  # the same stream on


def test_restore_counts_the_d_steps_of_a_checkpoint_without_them(tmp_path):
    o = objects(0)
    state = ck.capture(o, ck.Progress(4, 0, torch.get_rng_state(), torch.zeros(1)), {}, (3,))
    del state["d_steps"]
    assert ck.restore(objects(0), state, tmp_path / "c.pt", n_dis=5).d_steps == 20


def test_restore_refuses_other_networks_in_one_line(tmp_path):
    state = ck.capture(objects(0), ck.Progress(1, 1, torch.get_rng_state(), torch.zeros(1)), {}, (3,))
    other = objects(0)
    other.D = nn.Linear(3, 1)
    with pytest.raises(GannormError, match=r"holds the discriminator with weight of shape \[1, 2\], the config builds "
                                           r"\[1, 3\]") as err:
        ck.restore(other, state, tmp_path / "c.pt", n_dis=1)
    assert "\n" not in str(err.value)


def test_save_with_a_best_record_writes_the_latest_first_then_the_best(tmp_path):
    folder = RunFolder.create(tmp_path, "run")
    state = ck.capture(objects(0), ck.Progress(3, 3, torch.get_rng_state(), torch.zeros(1)), {}, (3,))
    ck.save(folder, state, best=BestRecord("fid", 3, 12.5, "ema"))
    assert folder.read_best() == BestRecord("fid", 3, 12.5, "ema")
    assert load_checkpoint(folder.checkpoint)["step"] == 3 and load_checkpoint(folder.best_checkpoint)["step"] == 3
    ck.save(folder, {**state, "step": 4})  # no record: only the latest moves on
    assert load_checkpoint(folder.checkpoint)["step"] == 4 and load_checkpoint(folder.best_checkpoint)["step"] == 3


def test_a_second_stop_request_interrupts_at_once(capsys):
    stop = StopRequest()
    assert not stop.requested
    stop.request(signal.SIGTERM)
    assert stop.requested and stop.signum == signal.SIGTERM
    assert f"got signal {int(signal.SIGTERM)}; saving a checkpoint after this step" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):
        stop.request()
    assert stop.signum == signal.SIGTERM  # the first request is the one remembered


def test_the_handlers_catch_a_real_signal_and_give_the_callers_back():
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stop = StopRequest()
    with stop.handlers():
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread before kill returns to Python code
        assert stop.signum == signal.SIGTERM
    assert {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} == before


def test_off_the_main_thread_no_handler_is_installed():
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    seen = []

    def body():
        with StopRequest().handlers():
            seen.append({sig: signal.getsignal(sig) for sig in STOP_SIGNALS})

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]
