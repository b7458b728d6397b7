"""Dataset readers on tiny files written in each public format."""
import json
import pickle

import pandas as pd
import pytest

from mofkit.data.datasets import (AnnotationError, MissingVideosError, load_dataset, load_didemo,
                                  load_msrvtt, load_msvd)


def _videos(root, ids, ext=".mp4"):
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for v in ids:
        (root / "videos" / f"{v}{ext}").write_bytes(b"not decoded here")


@pytest.fixture
def msrvtt(tmp_path):
    root = tmp_path / "msrvtt"
    root.mkdir()
    sentences = [{"caption": f"caption {j} of video{i}", "video_id": f"video{i}", "sen_id": 10 * i + j}
                 for i in range(6) for j in range(3)]
    (root / "MSRVTT_data.json").write_text(json.dumps(
        {"videos": [{"video_id": f"video{i}", "split": "train"} for i in range(6)],
         "sentences": sentences}))
    pd.DataFrame({"video_id": ["video0", "video1", "video2", "video3"]}).to_csv(
        root / "MSRVTT_train.9k.csv", index=False)
    pd.DataFrame({"video_id": ["video0", "video1"]}).to_csv(root / "MSRVTT_train.7k.csv", index=False)
    pd.DataFrame({"key": ["ret0", "ret1"], "vid_key": ["msr4", "msr5"],
                  "video_id": ["video4", "video5"],
                  "sentence": ["a man sings", "a dog runs"]}).to_csv(
        root / "MSRVTT_JSFUSION_test.csv", index=False)
    _videos(root, [f"video{i}" for i in range(6)])
    return root


def test_msrvtt_train_has_all_captions_and_test_one(msrvtt):
    train = load_msrvtt(msrvtt, "train")
    assert train.video_ids == ["video0", "video1", "video2", "video3"]
    assert train[1].captions == [f"caption {j} of video1" for j in range(3)]
    assert train[0].path == msrvtt / "videos" / "video0.mp4"
    caps, rows = train.caption_pairs()
    assert len(caps) == 12 and list(rows[:4]) == [0, 0, 0, 1]
    test = load_dataset("msrvtt", msrvtt, "test")
    assert test.protocol == "single" and test.video_ids == ["video4", "video5"]
    assert [r.captions for r in test] == [["a man sings"], ["a dog runs"]]
    assert len(load_msrvtt(msrvtt, "train", train_split="7k")) == 2
    syn = load_dataset("synthetic", msrvtt, "test")
    assert syn.name == "synthetic" and syn.video_ids == test.video_ids


def test_msrvtt_errors_name_files_and_ids(msrvtt):
    with pytest.raises(ValueError, match="no val split"):
        load_msrvtt(msrvtt, "val")
    (msrvtt / "videos" / "video5.mp4").unlink()
    with pytest.raises(MissingVideosError) as err:
        load_msrvtt(msrvtt, "test")
    assert "video5" in str(err.value) and "MSRVTT_JSFUSION_test.csv" in str(err.value)
    with pytest.warns(UserWarning, match="video5") as rec:
        ds = load_msrvtt(msrvtt, "test", missing="skip")
    assert len(rec) == 1 and ds.video_ids == ["video4"] and "video5" in ds.excluded
    (msrvtt / "MSRVTT_data.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="MSRVTT_data.json is not valid JSON"):
        load_msrvtt(msrvtt, "train")
    (msrvtt / "MSRVTT_data.json").unlink()
    with pytest.raises(AnnotationError, match="annotation file not found.*MSRVTT_data.json"):
        load_msrvtt(msrvtt, "train")
    pd.DataFrame({"vid": ["video0"]}).to_csv(msrvtt / "MSRVTT_train.9k.csv", index=False)
    with pytest.raises(AnnotationError, match="lacks column"):
        load_msrvtt(msrvtt, "train")


def test_msvd_multi_caption(tmp_path):
    root = tmp_path / "msvd"
    root.mkdir()
    raw = {"vidA": [["a", "cat", "sleeps"], ["the", "cat", "rests"]], "vidB": [["a", "car"]],
           "vidC": [["rain"], ["it", "rains"], ["wet", "street"]]}
    with open(root / "raw-captions.pkl", "wb") as f:
        pickle.dump(raw, f)
    (root / "train_list.txt").write_text("vidA\nvidB\n")
    (root / "val_list.txt").write_text("vidB\n")
    (root / "test_list.txt").write_text("vidC\nvidA\n")
    _videos(root, ["vidA", "vidB", "vidC"], ext=".avi")
    test = load_msvd(root, "test")
    assert test.protocol == "multi" and test.video_ids == ["vidC", "vidA"]
    assert test[0].captions == ["rain", "it rains", "wet street"]
    caps, rows = test.caption_pairs()
    assert list(rows) == [0, 0, 0, 1, 1] and caps[3] == "a cat sleeps"
    assert load_dataset("msvd", root, "train").protocol == "single"
    (root / "test_list.txt").write_text("vidZ\n")
    with pytest.raises(AnnotationError, match="vidZ"):
        load_msvd(root, "test")


def test_didemo_paragraphs_in_time_order(tmp_path):
    root = tmp_path / "didemo"
    root.mkdir()
    items = [{"video": "v1.mp4", "description": "then he jumps", "times": [[2, 3], [2, 2]]},
             {"video": "v1.mp4", "description": "a man walks", "times": [[0, 0], [0, 1]]},
             {"video": "v2.mov", "description": "a bird flies", "times": [[1, 1]]}]
    (root / "test_data.json").write_text(json.dumps(items))
    _videos(root, ["v1"])
    _videos(root, ["v2"], ext=".mov")
    ds = load_didemo(root, "test")
    assert ds.protocol == "paragraph" and ds.video_ids == ["v1", "v2"]
    assert ds[0].captions == ["a man walks then he jumps"]
    assert ds[1].path.suffix == ".mov"
    (root / "test_list.txt").write_text("v2.mov\n")
    assert load_dataset("didemo", root, "test").video_ids == ["v2"]
    (root / "test_data.json").write_text(json.dumps([{"video": "v1.mp4"}]))
    with pytest.raises(AnnotationError, match="item #0 lacks"):
        load_didemo(root, "test")


def test_without_records_the_reason(msrvtt):
    ds = load_msrvtt(msrvtt, "train")
    less = ds.without(["video1"], "unreadable")
    assert less.video_ids == ["video0", "video2", "video3"]
    assert less.excluded == {"video1": "unreadable"} and len(ds) == 4


def test_unknown_dataset_and_split(msrvtt):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("kinetics", msrvtt, "train")
    with pytest.raises(ValueError, match="splits"):
        load_msvd(msrvtt, "dev")
