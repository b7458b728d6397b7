"""The compressed-frame bank: rows on disk, Adam equal to torch.optim.Adam, generations, checkpoints."""
import hashlib
import json
import os
import time

import numpy as np
import pytest
import torch

from mofkit.bilevel.bank import FrameBank, bank_nbytes, step_lr
from mofkit.rowstore import NpyRows

V, K, S = 10, 2, 8
IDS = [f"video{i}" for i in range(V)]


def _init_frames(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(V, K, 3, S, S, generator=g)  # (V, K, 3, S, S)


def _bank(tmp_path, dtype="float32", frames=None, name="bank", **kw):
    x = _init_frames() if frames is None else frames
    return FrameBank.create(tmp_path / name, IDS, K, S, dtype=dtype,
                            init=lambda rows: x[torch.from_numpy(rows)], **kw)


class _TorchRows:
    """Reference: one torch.optim.Adam over one parameter per row; rows without grad are skipped."""

    def __init__(self, frames, lr, betas=(0.5, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = [torch.nn.Parameter(f.clone()) for f in frames]
        self.opt = torch.optim.Adam(self.params, lr=lr, betas=betas, eps=eps,
                                    weight_decay=weight_decay)

    def step(self, grads: dict[int, torch.Tensor], lr=None):
        self.opt.zero_grad(set_to_none=True)
        for r, g in grads.items():
            self.params[r].grad = g.clone()
        if lr is not None:
            self.opt.param_groups[0]["lr"] = lr
        self.opt.step()

    def frames(self):
        return torch.stack([p.detach() for p in self.params])


def _grads(rows, seed, scale=1e-3):
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.randn(len(rows), K, 3, S, S, generator=g) * scale


def _file_digest(path):
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _fp16_ulp(x):
    x16 = x.to(torch.float16)
    return (torch.nextafter(x16, torch.full_like(x16, float("inf"))).float() - x16.float()).abs()


# -- basics ----------------------------------------------------------------------------------------

def test_step_lr_halves_every_step_size():
    assert step_lr(8e-4, 0) == 8e-4
    assert step_lr(8e-4, 29) == 8e-4
    assert step_lr(8e-4, 30) == pytest.approx(4e-4)
    assert step_lr(8e-4, 65, step_size=30, gamma=0.5) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="step_size"):
        step_lr(1.0, 0, step_size=0)


def test_create_with_init_layout_and_sizes(tmp_path):
    x = _init_frames()
    calls = []
    bank = _bank(tmp_path, frames=x, chunk=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, V), (6, V), (9, V), (10, V)]
    assert torch.equal(bank.read(np.arange(V)), x)
    assert (bank.num_videos, bank.num_frames, bank.image_size, bank.dtype) == (V, K, S, "float32")
    assert bank.video_ids == IDS and bank.row_of("video7") == 7
    assert bank.rows_of(["video3", "video1"]).tolist() == [3, 1]
    assert bank.generation == 0 and not bank.sealed
    root = tmp_path / "bank"
    for name in ("gen-000000/frames.npy", "gen-000000/exp_avg.npy", "gen-000000/exp_avg_sq.npy",
                 "gen-000000/steps.npy", "grad_accum.npy", "grad_count.npy", "bank.json"):
        assert (root / name).is_file(), name
    meta = json.loads((root / "bank.json").read_text())
    assert meta["current"] == 0 and meta["video_ids"] == IDS and meta["dtype"] == "float32"
    sizes = bank_nbytes(V, K, S, "float32")
    npy_headers = 6 * 128  # each .npy header is padded to 128 bytes here
    assert bank.nbytes == sizes["steady"] + npy_headers + (root / "bank.json").stat().st_size
    # the reference's MSR-VTT bank: frames ~43 GB in fp32, ~22 GB in fp16
    assert bank_nbytes(9000, 8, 224)["frames"] == pytest.approx(43.35e9, rel=1e-3)
    assert bank_nbytes(9000, 8, 224, "float16")["frames"] == pytest.approx(21.68e9, rel=1e-3)
    assert np.load(root / "gen-000000/exp_avg_sq.npy", mmap_mode="r").dtype == np.float32


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_read_write_touch_only_given_rows(tmp_path, dtype):
    x = _init_frames()
    bank = _bank(tmp_path, dtype=dtype, frames=x)
    stored = x.to(getattr(torch, dtype)).float()
    out = bank.read([4, 1, 4])
    assert out.dtype == torch.float32 and out.shape == (3, K, 3, S, S)
    assert torch.equal(out, stored[[4, 1, 4]])
    new = torch.full((2, K, 3, S, S), 0.25)
    bank.write(np.array([2, 6]), new)
    after = bank.read(np.arange(V))
    assert torch.equal(after[[2, 6]], new)
    others = [r for r in range(V) if r not in (2, 6)]
    assert torch.equal(after[others], stored[others])
    reopened = FrameBank.open(tmp_path / "bank")
    assert torch.equal(reopened.read(np.arange(V)), after)


def test_fp16_bank_stores_half_frames_and_float32_moments(tmp_path):
    bank = _bank(tmp_path, dtype="float16")
    root = tmp_path / "bank" / "gen-000000"
    assert np.load(root / "frames.npy", mmap_mode="r").dtype == np.float16
    for name in ("exp_avg.npy", "exp_avg_sq.npy"):
        assert np.load(root / name, mmap_mode="r").dtype == np.float32
    # a squared pixel hypergradient survives in the float32 second moment (it is 0 in float16)
    g = torch.full((1, K, 3, S, S), 1e-6)
    assert torch.tensor(1e-12, dtype=torch.float16) == 0
    bank.step_rows([0], g, lr=1e-3)
    v = np.load(root.parent / f"gen-{bank.generation:06d}" / "exp_avg_sq.npy", mmap_mode="r")[0]
    assert np.allclose(v, 0.001 * 1e-12, rtol=1e-5)


# -- Adam ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("chunk", [None, 3])  # one chunk; four, streamed through the pipeline
def test_step_accumulated_matches_torch_adam(tmp_path, weight_decay, chunk):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    ref = _TorchRows(x, lr=1e-2, weight_decay=weight_decay)
    # rows get gradient in different epochs, so their step counts (and bias corrections) differ
    schedule = [[0, 1, 2, 3, 4], [0, 2, 7], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 9]]
    for epoch, rows in enumerate(schedule):
        lr = step_lr(1e-2, epoch, step_size=2, gamma=0.5)
        g = _grads(rows, epoch)
        # two meta batches, the second repeating row 0: the accumulator sums like autograd
        bank.accumulate(rows[:2], g[:2])
        bank.accumulate(rows[2:] + [rows[0]], torch.cat([g[2:], g[:1]]))
        total = {r: g[i] for i, r in enumerate(rows)}
        total[rows[0]] = g[0] + g[0]
        stats = bank.step_accumulated(lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay,
                                      chunk=chunk)
        ref.step(total, lr=lr)
        assert stats["rows_updated"] == len(rows) and stats["rows_skipped"] == 0
        torch.testing.assert_close(bank.read(np.arange(V)), ref.frames(), rtol=1e-6, atol=1e-7)
    steps = np.load(tmp_path / "bank" / f"gen-{bank.generation:06d}" / "steps.npy")
    assert steps.tolist() == [4, 2, 3, 2, 2, 1, 1, 2, 1, 2]


def test_step_rows_matches_torch_adam(tmp_path):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    ref = _TorchRows(x, lr=5e-3, betas=(0.9, 0.99), eps=1e-6)
    for step, rows in enumerate([[3, 1, 5], [1, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [5, 5, 2]]):
        g = _grads(rows, step)
        skipped = bank.step_rows(rows, g, lr=5e-3, betas=(0.9, 0.99), eps=1e-6)
        assert skipped == []
        total: dict[int, torch.Tensor] = {}
        for i, r in enumerate(rows):
            total[r] = total.get(r, 0) + g[i]
        ref.step(total)
        torch.testing.assert_close(bank.read(np.arange(V)), ref.frames(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["accumulated", "rows"])
def test_fp16_bank_follows_torch_adam_within_rounding(tmp_path, mode):
    x = _init_frames().half().float()
    bank = _bank(tmp_path, dtype="float16", frames=x)
    ref = _TorchRows(x, lr=1e-2)
    n_steps, peak = 4, x.abs()
    for step in range(n_steps):
        rows = list(range(V))
        g = _grads(rows, step)
        if mode == "accumulated":
            bank.accumulate(rows, g)
            bank.step_accumulated(lr=1e-2)
        else:
            bank.step_rows(rows, g, lr=1e-2)
        ref.step({r: g[r] for r in rows})
        peak = torch.maximum(peak, ref.frames().abs())
    want = ref.frames()
    err = (bank.read(np.arange(V)) - want).abs()
    # each write rounds to one of the two float16 neighbours; the update itself does not depend on
    # the frames (no weight decay), so the errors of n steps add up to at most n spacings (taken at
    # the largest magnitude the pixel had, where the spacing is widest)
    assert torch.all(err <= n_steps * _fp16_ulp(peak * (1 + 2 ** -10)))
    assert err.max() > 0  # it is float16


def test_fp16_stochastic_rounding_keeps_steps_below_the_spacing(tmp_path):
    # at |x| = 3 the float16 spacing is 2e-3: a 1e-4 step would vanish with round-to-nearest
    x = torch.full((V, K, 3, S, S), 3.0)
    bank = _bank(tmp_path, dtype="float16", frames=x)
    bank.step_rows(np.arange(V), torch.full((V, K, 3, S, S), 1e-3), lr=1e-4)  # Adam's 1st step = lr
    change = 3.0 - bank.read(np.arange(V))
    assert set(torch.unique(change).tolist()) <= {0.0, 2 ** -9}
    assert change.mean().item() == pytest.approx(1e-4, rel=0.3)  # unbiased: 7e-6 std here
    # reproducible: the same row at the same step rounds the same way
    again = _bank(tmp_path, dtype="float16", frames=x, name="again")
    again.step_rows(np.arange(V), torch.full((V, K, 3, S, S), 1e-3), lr=1e-4)
    assert torch.equal(again.read(np.arange(V)), bank.read(np.arange(V)))


def _row_eps_adam(frames, grads_per_step, lr, betas=(0.5, 0.999), eps=1e-8):
    """Reference in float64, one row at a time: Adam with eps times the row's RMS sqrt(v_hat)."""
    x = frames.double().clone()
    m, v = torch.zeros_like(x), torch.zeros_like(x)
    for t, g in enumerate(grads_per_step, start=1):
        g = g.double()
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        for r in range(len(x)):
            rms = v_hat[r].mean().sqrt()
            x[r] -= lr * m_hat[r] / (v_hat[r].sqrt() + eps * rms)
    return x


@pytest.mark.parametrize("mode", ["accumulated", "rows"])
def test_row_relative_eps_follows_its_reference(tmp_path, mode):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    # rows of very different gradient scales; eps relative to each row's scale treats them alike
    scales = torch.logspace(-12, 0, V).view(V, 1, 1, 1, 1)
    grads = [_grads(range(V), step, scale=1.0) * scales for step in range(3)]
    for g in grads:
        if mode == "accumulated":
            bank.accumulate(np.arange(V), g)
            bank.step_accumulated(lr=1e-2, eps=1e-3, eps_scale="row")
        else:
            bank.step_rows(np.arange(V), g, lr=1e-2, eps=1e-3, eps_scale="row")
    want = _row_eps_adam(x, grads, lr=1e-2, eps=1e-3).float()
    torch.testing.assert_close(bank.read(np.arange(V)), want, rtol=1e-5, atol=1e-6)


def test_row_relative_eps_makes_the_step_independent_of_the_gradient_scale(tmp_path):
    x = _init_frames()
    g = _grads(range(V), 0, scale=1.0)
    moved = {}
    for scale in (1.0, 1e-10):
        for eps_scale in ("row", "absolute"):
            bank = _bank(tmp_path, frames=x, name=f"bank-{scale}-{eps_scale}")
            bank.step_rows(np.arange(V), g * scale, lr=8e-4, eps_scale=eps_scale)
            moved[scale, eps_scale] = (bank.read(np.arange(V)) - x).abs()
    torch.testing.assert_close(moved[1e-10, "row"], moved[1.0, "row"], rtol=1e-4, atol=1e-9)
    # Adam's first step is lr * g / |g|: every pixel moves by frame_lr, at any gradient scale
    assert moved[1e-10, "row"].mean() == pytest.approx(8e-4, rel=1e-3)
    # torch's absolute eps at a 1e-10 gradient: about 1 % of that
    assert moved[1e-10, "absolute"].mean() < 0.02 * 8e-4
    with pytest.raises(ValueError, match="eps_scale"):
        bank.step_rows([0], g[:1], lr=1e-3, eps_scale="relative")


# -- non-finite values ----------------------------------------------------------------------------

def test_nonfinite_gradients_skip_their_rows_only(tmp_path):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    g = _grads(range(4), 0)
    g[1, 0, 0, 0, 0] = float("nan")
    g[3, 1, 2, 3, 4] = float("inf")
    assert bank.accumulate([0, 1, 2, 3], g) == [1, 3]
    assert bank.pending_rows().tolist() == [0, 2]
    stats = bank.step_accumulated(lr=1e-2)
    assert stats["rows_updated"] == 2
    out = bank.read(np.arange(V))
    assert torch.equal(out[[1, 3]], x[[1, 3]])
    assert not torch.equal(out[0], x[0]) and not torch.equal(out[2], x[2])

    skipped = bank.step_rows([5, 6, 7], torch.stack([g[0], g[1], g[2]]), lr=1e-2)
    assert skipped == [6]
    after = bank.read(np.arange(V))
    assert torch.equal(after[6], out[6]) and not torch.equal(after[5], out[5])
    steps = np.load(tmp_path / "bank" / f"gen-{bank.generation:06d}" / "steps.npy")
    assert steps[[5, 6, 7]].tolist() == [1, 0, 1]


def test_rows_whose_result_overflows_are_skipped(tmp_path):
    x = _init_frames()
    x[4] = 65000.0  # next to float16's largest finite value
    bank = _bank(tmp_path, dtype="float16", frames=x)
    rows = [2, 4]
    bank.accumulate(rows, -torch.ones(2, K, 3, S, S))  # Adam moves every pixel up by lr
    stats = bank.step_accumulated(lr=1000.0)
    assert stats["skipped_rows"] == [4] and stats["rows_updated"] == 1
    out = bank.read(np.arange(V))
    assert torch.isfinite(out).all()
    assert torch.equal(out[4], x[4].half().float())
    assert torch.all(out[2] > x[2].half().float())
    assert bank.step_rows([4], -torch.ones(1, K, 3, S, S), lr=1000.0) == [4]


def test_accumulator_is_reset_after_a_step(tmp_path):
    """After a step the counts are zero, and a row's next gradient replaces the stale one, which
    is never read: the reset writes no accumulator bytes."""
    bank = _bank(tmp_path)
    bank.accumulate([1, 2], _grads([1, 2], 0))
    bank.step_accumulated(lr=1e-2)
    assert bank.pending_rows().size == 0
    root = tmp_path / "bank"
    assert not np.load(root / "grad_count.npy").any()
    assert np.load(root / "grad_accum.npy")[1].any()  # stale, uncounted: ignored
    g2 = _grads([1], 5)
    bank.accumulate([1], g2)
    assert bank.pending_rows().tolist() == [1]
    assert np.array_equal(np.load(root / "grad_accum.npy")[1], g2[0].numpy())  # replaced, not added
    bank.accumulate([1], g2)
    assert np.array_equal(np.load(root / "grad_accum.npy")[1], (g2[0] + g2[0]).numpy())  # counted: added
    bank.step_accumulated(lr=1e-2)
    g = bank.generation
    before = bank.read(np.arange(V))
    stats = bank.step_accumulated(lr=1e-2)  # nothing pending: no change, no new generation
    assert stats["rows_updated"] == 0 and bank.generation == g
    assert torch.equal(bank.read(np.arange(V)), before)


# -- generations and checkpoints -------------------------------------------------------------------

def test_step_accumulated_writes_a_new_generation(tmp_path):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    root = tmp_path / "bank"
    state_before = bank.commit()
    assert bank.sealed and state_before["generation"] == 0
    digests = {p.name: _file_digest(p) for p in (root / "gen-000000").iterdir()}
    bank.accumulate(np.arange(V), _grads(range(V), 0))
    stats = bank.step_accumulated(lr=1e-2)
    assert stats["generation"] == 1 and stats["parent"] == 0 and bank.generation == 1
    assert {p.name: _file_digest(p) for p in (root / "gen-000000").iterdir()} == digests
    assert json.loads((root / "bank.json").read_text())["current"] == 1
    new = bank.read(np.arange(V))
    state_after = bank.commit()
    assert torch.equal(FrameBank.restore(state_before).read(np.arange(V)), x)
    assert torch.equal(FrameBank.restore(state_after).read(np.arange(V)), new)


def test_resume_after_crash_between_update_and_checkpoint(tmp_path):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    state = bank.commit()  # checkpoint of epoch 1
    bank.accumulate(np.arange(V), _grads(range(V), 0))
    bank.step_accumulated(lr=1e-2)  # epoch 2's frame step (generation 1) ...
    bank.accumulate([0, 1], _grads([0, 1], 1))  # ... epoch 3's meta epoch starts, then a crash
    del bank

    bank = FrameBank.restore(state)
    assert bank.generation == 0 and torch.equal(bank.read(np.arange(V)), x)
    assert FrameBank.open(tmp_path / "bank").generation == 0  # bank.json points back at it
    assert bank.pending_rows().size == 0  # the interrupted epoch's gradients would count twice
    bank.accumulate([3], _grads([3], 2))
    stats = bank.step_accumulated(lr=1e-2)
    assert stats["generation"] == 2  # never reuses the orphaned generation 1
    assert bank.prune(keep={bank.generation}) == [0, 1]
    assert sorted(p.name for p in (tmp_path / "bank").iterdir() if p.is_dir()) == ["gen-000002"]


def test_step_rows_on_a_sealed_generation_begins_a_new_one(tmp_path):
    x = _init_frames()
    bank = _bank(tmp_path, frames=x)
    state = bank.commit()
    bank.step_rows([1], _grads([1], 0), lr=1e-2)
    assert bank.generation == 1 and not bank.sealed
    bank.step_rows([2], _grads([2], 1), lr=1e-2)
    assert bank.generation == 1  # in place from now on
    assert torch.equal(FrameBank.open(tmp_path / "bank", generation=0).read(np.arange(V)), x)
    assert torch.equal(FrameBank.restore(state).read(np.arange(V)), x)
    with pytest.raises(ValueError, match="read-only"):  # the sealed memmap refuses writes
        FrameBank.open(tmp_path / "bank", generation=0)._frames[0] = 0


def test_explicit_begin_generation_copies_everything(tmp_path):
    bank = _bank(tmp_path)
    bank.step_rows([0, 3], _grads([0, 3], 0), lr=1e-2)
    before = bank.read(np.arange(V))
    done = []
    bank.begin_generation(progress=lambda i, n: done.append(i))
    assert bank.generation == 1 and done == [1, 2, 3, 4]
    assert torch.equal(bank.read(np.arange(V)), before)
    root = tmp_path / "bank"
    for name in ("frames.npy", "exp_avg.npy", "exp_avg_sq.npy", "steps.npy"):
        assert _file_digest(root / "gen-000000" / name) == _file_digest(root / "gen-000001" / name)


def test_commit_restore_round_trip_continues_adam_exactly(tmp_path):
    x = _init_frames()
    a = _bank(tmp_path, frames=x, name="a")
    b = _bank(tmp_path, frames=x, name="b")
    for step in range(2):
        g = _grads([1, 4], step)
        a.step_rows([1, 4], g, lr=1e-2)
        b.step_rows([1, 4], g, lr=1e-2)
    state = b.commit()
    assert json.loads(json.dumps(state)) == state  # plain types, fits any checkpoint
    del b
    b = FrameBank.restore(state)
    g = _grads([1, 4, 6], 9)
    a.step_rows([1, 4, 6], g, lr=1e-2)
    b.step_rows([1, 4, 6], g, lr=1e-2)  # moments and step counts came back too
    assert torch.equal(a.read(np.arange(V)), b.read(np.arange(V)))


def test_restore_refuses_another_bank_and_finds_a_moved_one(tmp_path):
    bank = _bank(tmp_path)
    state = bank.commit()
    moved = tmp_path / "moved"
    os.rename(tmp_path / "bank", moved)
    assert FrameBank.restore(state, directory=moved).generation == 0
    other = FrameBank.create(tmp_path / "other", [f"x{i}" for i in range(V)], K, S)
    with pytest.raises(ValueError, match="video_ids_sha1"):
        FrameBank.restore(state, directory=other.directory)


def test_prune(tmp_path):
    bank = _bank(tmp_path)
    for step in range(3):
        bank.commit()
        bank.accumulate([step], _grads([step], step))
        bank.step_accumulated(lr=1e-2)
    assert bank.generations == [0, 1, 2, 3]
    assert bank.prune(keep={1}) == [0, 2]  # the current generation (3) is always kept
    assert bank.generations == [1, 3]
    root = tmp_path / "bank"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["gen-000001", "gen-000003"]
    with pytest.raises(FileNotFoundError, match=r"generation 2 .*complete generations: \[1, 3\]"):
        FrameBank.open(root, generation=2)


# -- display, memory, errors -----------------------------------------------------------------------

def test_bank_frames_display_denormalised_and_clipped_only_in_the_image(tmp_path):
    from mofkit.data.preprocess import Preprocessor

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    x = torch.zeros(V, K, 3, S, S)
    x[0, 0, 0] = 100.0  # far above 1 after denormalising
    x[0, 0, 1] = -100.0
    bank = FrameBank.create(tmp_path / "bank", IDS, K, S, init=lambda rows: x[torch.from_numpy(rows)])
    bank._frames[0, 1, 2, 0, 0] = float("nan")  # the bank never stores one, but a display must not break
    img = Preprocessor(S, mean, std).to_uint8_image(bank.read([0, 2]))
    assert img.dtype == torch.uint8 and img.shape == (2, K, S, S, 3)
    assert (img[0, 0, ..., 0] == 255).all() and (img[0, 0, ..., 1] == 0).all()
    assert img[0, 0, 0, 0, 2] == round(0.3 * 255)
    assert img[1, 0, 0, 0].tolist() == [round(0.5 * 255), round(0.4 * 255), round(0.3 * 255)]
    assert img[0, 1, 0, 0, 2] == 0
    assert bank.read([0])[0, 0, 0].max() == 100.0  # the stored frames are not clamped


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_large_bank_is_created_sparse_and_read_by_rows(tmp_path):
    v, k, s = 1800, 2, 224  # 2.2 GB of float32 frames, and as much for each moment and the accumulator
    t0 = time.time()
    bank = FrameBank.create(tmp_path / "big", [f"v{i}" for i in range(v)], k, s)
    assert time.time() - t0 < 10
    assert isinstance(bank._frames, np.memmap) and isinstance(bank._accum, NpyRows)
    assert bank.nbytes > 4 * 2.1e9
    frames_file = tmp_path / "big" / "gen-000000" / "frames.npy"
    assert frames_file.stat().st_blocks * 512 < 1e8  # sparse: nothing was written
    rss = _rss_bytes()
    rows = [5, 900, 1799]
    bank.write(rows, torch.ones(3, k, 3, s, s))
    bank.accumulate(rows, torch.ones(3, k, 3, s, s))
    out = bank.read(rows)
    assert out.shape == (3, k, 3, s, s) and out.sum().item() == 3 * k * 3 * s * s
    assert _rss_bytes() - rss < 200e6  # a few rows in RAM, not the 2.2 GB file


def test_errors_name_what_is_wrong(tmp_path):
    bank = _bank(tmp_path)
    with pytest.raises(KeyError, match="'video99' is not in the frame bank"):
        bank.row_of("video99")
    with pytest.raises(ValueError, match=r"\(2, 2, 3, 8, 8\), got \(2, 2, 3, 4, 4\)"):
        bank.accumulate([0, 1], torch.zeros(2, K, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(1, 2, 3, 8, 8\)"):
        bank.step_rows([0], torch.zeros(2, K, 3, S, S), lr=1e-3)
    with pytest.raises(IndexError, match=r"rows \[10\] out of range; the bank has rows 0..9"):
        bank.read([0, 10])
    with pytest.raises(ValueError, match="non-finite frames .* videos \\['video3'\\]"):
        bank.write([3], torch.full((1, K, 3, S, S), float("nan")))
    with pytest.raises(FileExistsError, match="already holds a bank"):
        _bank(tmp_path)
    with pytest.raises(ValueError, match="unique; repeated: \\['a'\\]"):
        FrameBank.create(tmp_path / "dup", ["a", "b", "a"], K, S)
    with pytest.raises(ValueError, match="bfloat16"):
        FrameBank.create(tmp_path / "bf", IDS, K, S, dtype="bfloat16")
    with pytest.raises(FileNotFoundError, match="no frame bank here"):
        FrameBank.open(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="betas"):
        bank.step_accumulated(lr=1e-3, betas=(1.5, 0.999))
    assert _bank(tmp_path, overwrite=True).generation == 0


def test_stochastic_rounding_picks_a_neighbour_without_bias_at_every_magnitude():
    from mofkit.bilevel.adam import stochastic_round_fp16

    values = [3.0001, -3.0001, 1e-6, -1e-6, 2 ** -14 + 1e-9, 1.0, 0.0, 65510.0]
    n = 100_000
    x = torch.tensor(values).repeat(n, 1).T.contiguous()
    bits = torch.from_numpy(np.random.default_rng(0).integers(-2 ** 31, 2 ** 31, x.shape).astype(np.int32))
    y = torch.from_numpy(stochastic_round_fp16(x, bits)).double()
    for v, row in zip(values, y):
        lo = torch.tensor(v).half().double()  # nearest; the other neighbour is one spacing away
        got = set(torch.unique(row).tolist())
        assert len(got) <= 2 and lo.item() in got, (v, got)
        if v == 65510.0:  # past float16's largest: inf with probability (v - 65504) / 32
            assert got == {65504.0, float("inf")}
            continue
        spacing = max(abs(a - b) for a in got for b in got) or 1.0
        assert abs(row.mean().item() - v) < 4 * spacing / n ** 0.5 + 1e-12, (v, row.mean().item())
    nan = stochastic_round_fp16(torch.tensor([float("nan"), float("inf")]), torch.tensor([-1, -1], dtype=torch.int32))
    assert np.isnan(nan[0]) and np.isinf(nan[1])
