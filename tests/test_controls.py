"""The controls MOF is compared with: a frozen bank, an oracle bank, augmentation parity."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mofkit.config import get_config
from mofkit.data.synthetic import event_frames

pytestmark = pytest.mark.slow


def test_event_frames_fall_inside_the_events_in_order():
    events = [{"start": 0, "end": 10}, {"start": 10, "end": 12}, {"start": 12, "end": 32}]
    assert event_frames(events, 3) == [5, 11, 22]
    four = event_frames(events, 4)  # the first event gets two frames
    assert four == sorted(four) and four[:2] == [2, 7] and four[2] == 11
    assert event_frames(events, 2) == [5, 11]  # more events than frames: the first K
    for k in (1, 2, 3, 5, 8):
        idx = event_frames(events, k)
        assert len(idx) == k and all(0 <= i < 32 for i in idx)


def test_crop_with_seeds_is_the_training_crop_on_normalised_frames():
    from mofkit.data.preprocess import Preprocessor

    pre = Preprocessor(16)
    frames = torch.randint(0, 256, (3, 2, 24, 24, 3), dtype=torch.uint8)
    seeds = [(0, 1, r) for r in range(3)]
    a = pre.train_with_seeds(frames, seeds, scale=(0.5, 1.0), hflip=True)
    b = pre.crop_with_seeds(pre._normalized_chw(frames), seeds, scale=(0.5, 1.0), hflip=True)
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("controls")


def _train(root: Path, name: str, **over):
    from mofkit.train.loop import train

    cfg = get_config("smoke", {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache"),
                               "out_dir": str(root / name), "train.epochs": 2, **over})
    return cfg, train(cfg, progress=False)


def _bank_frames(out: Path) -> np.ndarray:
    from mofkit.bilevel.bank import FrameBank
    from mofkit.train.checkpoint import load_checkpoint

    bank = FrameBank.restore(load_checkpoint(out / "checkpoint.pt")["bank"])
    return bank.read(np.arange(bank.num_videos)).numpy()


def test_a_frozen_bank_never_moves_and_runs_no_meta_epoch(root):
    cfg, res = _train(root, "frozen", **{"mof.enabled": True, "mof.update": "none"})
    assert all("meta_loss_whole" not in row for row in res.history)
    snaps = sorted((res.out_dir / "snapshots").glob("epoch_*.npy"))
    assert [p.name for p in snaps] == ["epoch_000.npy"]
    start = np.load(snaps[0])  # denormalised first frames, float
    from mofkit.data.preprocess import Preprocessor
    from mofkit.models import create_from_config

    bundle = create_from_config(cfg.model)
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    now = pre.denormalize(torch.from_numpy(_bank_frames(res.out_dir)[:len(start)]), clip=False)
    assert np.array_equal(now.permute(0, 1, 3, 4, 2).numpy(), start)
    assert json.loads((res.out_dir / "metrics.json").read_text())["final"]["t2v"]


def test_an_oracle_bank_starts_from_the_frames_of_the_captioned_events(root):
    from mofkit.data.preprocess import Preprocessor
    from mofkit.data.synthetic import load_timeline
    from mofkit.data.video import read_frames
    from mofkit.models import create_from_config

    cfg, res = _train(root, "oracle", **{"mof.enabled": True, "mof.update": "none", "mof.init": "oracle"})
    frames = _bank_frames(res.out_dir)
    bundle = create_from_config(cfg.model)
    pre = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    ids = json.loads((res.out_dir / "bank" / "bank.json").read_text())["video_ids"]
    timeline = load_timeline(cfg.data.root)
    for row in (0, 5):
        vid = ids[row]
        idx = event_frames(timeline[vid], cfg.data.num_frames)
        raw = read_frames(Path(cfg.data.root) / "videos" / f"{vid}.mp4", idx, size=cfg.data.decode_size)
        expected = pre.eval(raw[None])[0].numpy()  # (K, 3, S, S)
        assert np.allclose(frames[row], expected, atol=1e-5), vid
    with pytest.raises(ValueError, match="only the synthetic corpus"):
        from mofkit.train.tasks import task_name

        task_name(get_config("paper", {"mof.enabled": True, "mof.init": "oracle"}))


def test_augmentation_parity_crops_bank_frames_in_the_base_step(root):
    _, plain = _train(root, "mof-plain", **{"mof.enabled": True})
    _, crop = _train(root, "mof-crop", **{"mof.enabled": True, "mof.augment": True})
    from mofkit.train.checkpoint import load_checkpoint

    a = load_checkpoint(plain.out_dir / "checkpoint.pt")["model"]
    b = load_checkpoint(crop.out_dir / "checkpoint.pt")["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the model saw other frames
    # the meta epoch runs on uncropped bank frames as before
    assert np.isfinite(crop.history[0]["meta_loss_whole"])
