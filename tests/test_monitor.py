"""What a run reports while it runs: TensorBoard scalars and the progress events the runner shows."""
import json
from pathlib import Path

import pytest

from mofkit.config import get_config
from mofkit.train.monitor import PROGRESS_ENV, scalar_tags
from mofkit.train.loop import train


def test_history_rows_map_to_tensorboard_tags():
    row = {"epoch": 3, "train_loss": 2.5, "lr": 1e-3, "t2v_R1": 20.0, "t2v_dsl_R1": 22.0,
           "v2t_MnR": 6.5, "meta_loss_whole": 2.7, "frames_mean_abs_change": 0.01, "frames_lr": 0.03,
           "epoch_seconds": 9.0, "nonfinite_skipped": 0, "note": "text", "bad": float("nan")}
    tags = scalar_tags(row)
    assert tags == {"epoch/train_loss": 2.5, "epoch/lr": 1e-3, "t2v/R1": 20.0, "t2v_dsl/R1": 22.0,
                    "v2t/MnR": 6.5, "meta/loss_whole": 2.7, "frames/mean_abs_change": 0.01,
                    "frames/lr": 0.03, "time/epoch_s": 9.0, "epoch/nonfinite_skipped": 0.0}


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_a_mof_run_writes_tensorboard_scalars_and_progress_events(tmp_path, monkeypatch):
    events = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(events))
    cfg = get_config("smoke", {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
                               "out_dir": str(tmp_path / "run"), "train.epochs": 2, "mof.enabled": True})
    first = train(cfg, progress=False, stop_after_epoch=0)
    # a session killed after its checkpoint had logged steps of the next epoch
    from torch.utils.tensorboard import SummaryWriter

    spe = cfg.synthetic.n_train // cfg.train.batch_size // cfg.train.grad_accum
    with SummaryWriter(str(tmp_path / "run" / "tensorboard")) as killed:
        for step in (spe + 1, spe + 2):
            killed.add_scalar("train/loss", 999.0, step)
    res = train(cfg, progress=False)
    assert res.resumed_from == 0
    scalars = _scalars(tmp_path / "run" / "tensorboard")
    for tag in ("train/loss", "train/lr_tower", "t2v/R1", "v2t/R1", "t2v_dsl/R1", "meta/loss_whole",
                "meta/loss_compressed", "frames/mean_abs_change", "frames/lr", "time/epoch_s"):
        assert tag in scalars, (tag, sorted(scalars))
    per_epoch = [s for s, _ in scalars["t2v/R1"]]
    assert len(per_epoch) == 2 and per_epoch[0] < per_epoch[1]
    assert [v for _, v in scalars["t2v/R1"]] == [row["t2v_R1"] for row in res.history]
    # one loss per optimiser step over both sessions, each step once; the killed session's are gone
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, 2 * spe + 1))
    assert 999.0 not in [v for _, v in scalars["train/loss"]]
    assert len(first.history) == 1
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [e["event"] for e in lines]
    assert kinds.count("start") == 2 and kinds.count("epoch") == 2 and kinds.count("end") == 1
    assert all(e["run"].endswith("run") for e in lines)
    last_epoch = [e for e in lines if e["event"] == "epoch"][-1]
    assert last_epoch["epoch"] == 2 and last_epoch["epochs"] == 2 and last_epoch["eta_s"] == 0
    # a finished run asked again reports that it was reused
    train(cfg, progress=False)
    assert json.loads(events.read_text().splitlines()[-1])["reused"] is True


def test_a_new_writer_sorts_after_the_folder_s_event_files(tmp_path):
    import time

    from mofkit.train.monitor import wait_past_event_files

    now = int(time.time())
    (tmp_path / f"events.out.tfevents.{now:010d}.host.1.9").write_bytes(b"")
    (tmp_path / "events.out.tfevents.junk").write_bytes(b"")  # not a writer's name: ignored
    wait_past_event_files(tmp_path)
    assert int(time.time()) > now
    t0 = time.perf_counter()
    wait_past_event_files(tmp_path / "missing")  # nothing there: no wait
    assert time.perf_counter() - t0 < 0.5
