"""Dataset readers on tiny files written in each public annotation format.

The "videos" are a few bytes each: the readers only look files up, they never decode them.
"""
import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

from mofkit.data.datasets import (DATASETS, AnnotationError, MissingVideosError, VideoRecord,
                                  VideoTextDataset, load_dataset, load_didemo, load_msrvtt,
                                  load_msvd)


def _touch_videos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"not decoded here")


# ------------------------------------------------------------------------------------------------
# MSR-VTT
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def msrvtt(tmp_path):
    """Six videos: video0-3 in the 9k list, video0-1 in the 7k list, video4-5 in the 1k-A test."""
    root = tmp_path / "msrvtt"
    root.mkdir()
    sentences = [{"caption": f"caption {j} of video{i}", "video_id": f"video{i}", "sen_id": 3 * i + j}
                 for i in range(6) for j in range(3)]
    # sentences in MSRVTT_data.json are not grouped by video
    sentences = sentences[1::2] + sentences[0::2]
    (root / "MSRVTT_data.json").write_text(json.dumps(
        {"videos": [{"video_id": f"video{i}", "split": "train"} for i in range(6)],
         "sentences": sentences}))
    pd.DataFrame({"video_id": ["video3", "video0", "video1", "video2"]}).to_csv(
        root / "MSRVTT_train.9k.csv", index=False)
    pd.DataFrame({"video_id": ["video1", "video0"]}).to_csv(root / "MSRVTT_train.7k.csv", index=False)
    pd.DataFrame({"key": ["ret0", "ret1"], "vid_key": ["msr5", "msr4"], "video_id": ["video5", "video4"],
                  "sentence": ["a man sings", "a dog runs"]}).to_csv(
        root / "MSRVTT_JSFUSION_test.csv", index=False)
    _touch_videos(root / "videos", [f"video{i}.mp4" for i in range(6)])
    return root


def test_msrvtt_train_keeps_every_sentence_in_list_order(msrvtt):
    train = load_msrvtt(msrvtt, "train")
    assert (train.name, train.split, train.protocol) == ("msrvtt", "train", "multi")
    assert train.video_ids == ["video3", "video0", "video1", "video2"]
    assert sorted(train[2].captions) == [f"caption {j} of video1" for j in range(3)]
    assert train[0].path == msrvtt / "videos" / "video3.mp4"
    caps, rows = train.caption_pairs()
    assert len(caps) == 12 and rows.dtype == np.int64
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert all(c.endswith(train[r].video_id) for c, r in zip(caps, rows))


def test_msrvtt_7k_and_9k_lists(msrvtt):
    assert len(load_msrvtt(msrvtt, "train")) == 4
    assert load_msrvtt(msrvtt, "train", train_split="7k").video_ids == ["video1", "video0"]
    assert load_dataset("msrvtt", msrvtt, "train", train_split="7k").video_ids == ["video1", "video0"]
    with pytest.raises(ValueError, match="train_split='8k'.*'9k', '7k'"):
        load_msrvtt(msrvtt, "train", train_split="8k")


def test_msrvtt_test_is_1k_a_single_caption(msrvtt):
    test = load_dataset("msrvtt", msrvtt, "test")
    assert test.protocol == "single" and test.video_ids == ["video5", "video4"]
    assert [r.captions for r in test] == [["a man sings"], ["a dog runs"]]
    caps, rows = test.caption_pairs()
    assert caps == ["a man sings", "a dog runs"] and rows.tolist() == [0, 1]


def test_synthetic_is_msrvtt_format_under_its_own_name(msrvtt):
    syn = load_dataset("synthetic", msrvtt, "train")
    assert syn.name == "synthetic" and syn.video_ids == load_msrvtt(msrvtt, "train").video_ids
    assert set(DATASETS) == {"msrvtt", "msvd", "didemo", "synthetic"}


def test_videos_found_with_any_extension_in_one_listing(tmp_path, msrvtt):
    (msrvtt / "videos" / "video4.mp4").unlink()
    (msrvtt / "videos" / "video5.mp4").unlink()
    _touch_videos(msrvtt / "videos" / "all", ["video4.webm", "video5.mkv", "video5.mp4"])
    test = load_msrvtt(msrvtt, "test")
    # nested folders are searched; among duplicates the preferred extension wins (.mp4 before .mkv)
    assert [p.relative_to(msrvtt / "videos").as_posix() for p in (r.path for r in test)] == [
        "all/video5.mp4", "all/video4.webm"]
    other = tmp_path / "elsewhere"
    _touch_videos(other, ["video4.MOV", "video5.m4v"])
    moved = load_msrvtt(msrvtt, "test", video_dir=other)
    assert [r.path.name for r in moved] == ["video5.m4v", "video4.MOV"]


def test_msrvtt_val_and_unknown_split(msrvtt):
    with pytest.raises(ValueError, match="no val split"):
        load_msrvtt(msrvtt, "val")
    with pytest.raises(ValueError, match="split='dev'.*'train', 'test'"):
        load_msrvtt(msrvtt, "dev")
    with pytest.raises(ValueError, match="missing='ignore'"):
        load_msrvtt(msrvtt, "test", missing="ignore")


def test_msrvtt_missing_annotation_names_path_and_package(msrvtt):
    (msrvtt / "MSRVTT_JSFUSION_test.csv").unlink()
    with pytest.raises(AnnotationError) as err:
        load_msrvtt(msrvtt, "test")
    msg = str(err.value)
    assert str(msrvtt / "MSRVTT_JSFUSION_test.csv") in msg
    assert "CLIP4Clip" in msg and "MSRVTT_data.json" in msg and "MSRVTT_train.9k.csv" in msg
    (msrvtt / "MSRVTT_data.json").unlink()
    with pytest.raises(AnnotationError, match="not found: .*MSRVTT_data.json"):
        load_msrvtt(msrvtt, "train")


def test_msrvtt_malformed_files(msrvtt):
    data = msrvtt / "MSRVTT_data.json"
    good = data.read_text()
    data.write_text("{not json")
    with pytest.raises(AnnotationError, match="MSRVTT_data.json is not valid JSON"):
        load_msrvtt(msrvtt, "train")
    data.write_text(json.dumps({"videos": []}))
    with pytest.raises(AnnotationError, match="MSRVTT_data.json should be an object with a 'sentences'"):
        load_msrvtt(msrvtt, "train")
    data.write_text(json.dumps({"sentences": [{"video_id": "video0", "caption": 7}]}))
    with pytest.raises(AnnotationError, match=r"sentences\[0\].*'caption'"):
        load_msrvtt(msrvtt, "train")
    data.write_text(json.dumps({"sentences": [s for s in json.loads(good)["sentences"]
                                              if s["video_id"] != "video2"]}))
    with pytest.raises(AnnotationError, match="1 videos of .*MSRVTT_train.9k.csv have no sentence.*video2"):
        load_msrvtt(msrvtt, "train")
    pd.DataFrame({"vid": ["video0"]}).to_csv(msrvtt / "MSRVTT_train.9k.csv", index=False)
    with pytest.raises(AnnotationError, match=r"MSRVTT_train.9k.csv lacks column\(s\) \['video_id'\]"):
        load_msrvtt(msrvtt, "train")
    (msrvtt / "MSRVTT_JSFUSION_test.csv").write_text("")
    with pytest.raises(AnnotationError, match="cannot parse .*MSRVTT_JSFUSION_test.csv as CSV"):
        load_msrvtt(msrvtt, "test")
    (msrvtt / "MSRVTT_JSFUSION_test.csv").write_text("video_id,sentence\n")
    with pytest.raises(AnnotationError, match="names no videos"):
        load_msrvtt(msrvtt, "test")


def test_absent_videos_error_names_file_and_ids(msrvtt):
    for v in ("video4", "video5"):
        (msrvtt / "videos" / f"{v}.mp4").unlink()
    _touch_videos(msrvtt / "videos", ["video4.mp4"])
    with pytest.raises(MissingVideosError) as err:
        load_msrvtt(msrvtt, "test")
    e = err.value
    assert isinstance(e, FileNotFoundError) and e.ids == ["video5"]
    assert "video5" in str(e) and "MSRVTT_JSFUSION_test.csv" in str(e) and str(msrvtt / "videos") in str(e)
    assert "video4" not in str(e)


def test_absent_videos_skip_warns_once_and_drops(msrvtt):
    (msrvtt / "videos" / "video5.mp4").unlink()
    with pytest.warns(UserWarning) as caught:
        test = load_msrvtt(msrvtt, "test", missing="skip")
    assert len(caught) == 1 and "video5" in str(caught[0].message)
    assert "MSRVTT_JSFUSION_test.csv" in str(caught[0].message)
    assert test.video_ids == ["video4"] and test.caption_pairs()[0] == ["a dog runs"]
    assert list(test.excluded) == ["video5"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing missing: no warning at all
        assert len(load_msrvtt(msrvtt, "train", missing="skip")) == 4


def test_many_absent_ids_are_listed_with_a_count(msrvtt, tmp_path):
    ids = [f"clip{i:02d}" for i in range(25)]
    pd.DataFrame({"key": ids, "vid_key": ids, "video_id": ids, "sentence": ids}).to_csv(
        msrvtt / "MSRVTT_JSFUSION_test.csv", index=False)
    _touch_videos(msrvtt / "videos", ["clip00.mp4"])
    with pytest.raises(MissingVideosError) as err:
        load_msrvtt(msrvtt, "test")
    msg = str(err.value)
    assert msg.startswith("24 of 25 videos") and "clip01" in msg and "clip10" in msg
    assert "clip11" not in msg and "14 more" in msg
    # a folder that does not exist is named as such, even when skipping (nothing would be left)
    with pytest.raises(MissingVideosError, match="does not exist"):
        load_msrvtt(msrvtt, "test", video_dir=tmp_path / "nowhere", missing="skip")


# ------------------------------------------------------------------------------------------------
# MSVD
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def msvd(tmp_path):
    root = tmp_path / "msvd"
    root.mkdir()
    raw = {"-4wsuPCjDBc_5_15": [["a", "cat", "sleeps"], ["the", "cat", "rests"]],
           "vidB": [["a", "car"]],
           "vidC": [["rain"], ["it", "rains"], ["wet", "street"]]}
    with open(root / "raw-captions.pkl", "wb") as f:
        pickle.dump(raw, f)
    (root / "train_list.txt").write_text("-4wsuPCjDBc_5_15\nvidB\n")
    (root / "val_list.txt").write_text("vidB\n")
    (root / "test_list.txt").write_text("vidC\n-4wsuPCjDBc_5_15\n\n")
    _touch_videos(root / "videos", ["-4wsuPCjDBc_5_15.avi", "vidB.avi", "vidC.avi"])
    return root


def test_msvd_every_caption_is_a_query(msvd):
    test = load_msvd(msvd, "test")
    assert (test.name, test.protocol) == ("msvd", "multi")
    assert test.video_ids == ["vidC", "-4wsuPCjDBc_5_15"]
    assert test[0].captions == ["rain", "it rains", "wet street"]
    assert test[1].path == msvd / "videos" / "-4wsuPCjDBc_5_15.avi"
    caps, rows = test.caption_pairs()
    assert rows.tolist() == [0, 0, 0, 1, 1] and caps[3:] == ["a cat sleeps", "the cat rests"]
    val = load_dataset("msvd", msvd, "val", train_split="9k")  # train_split is ignored here
    assert val.video_ids == ["vidB"] and val.protocol == "multi"
    assert len(load_msvd(msvd, "train")) == 2


def test_msvd_errors(msvd):
    with pytest.raises(ValueError, match="split='dev'.*'train', 'val', 'test'"):
        load_msvd(msvd, "dev")
    (msvd / "test_list.txt").write_text("vidC\nvidZ\n")
    with pytest.raises(AnnotationError, match="ids of .*test_list.txt have no captions.*vidZ"):
        load_msvd(msvd, "test")
    (msvd / "raw-captions.pkl").write_bytes(b"garbage")
    with pytest.raises(AnnotationError, match="cannot read .*raw-captions.pkl as a pickle"):
        load_msvd(msvd, "val")
    with open(msvd / "raw-captions.pkl", "wb") as f:
        pickle.dump({"vidB": [["a", 3]]}, f)
    with pytest.raises(AnnotationError, match="raw-captions.pkl: a caption of 'vidB'"):
        load_msvd(msvd, "val")
    (msvd / "val_list.txt").unlink()
    with pytest.raises(AnnotationError, match="not found: .*val_list.txt"):
        load_msvd(msvd, "val")


# ------------------------------------------------------------------------------------------------
# DiDeMo
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def didemo(tmp_path):
    root = tmp_path / "didemo"
    root.mkdir()
    items = [
        {"video": "111@N00_1_aa.mov", "description": "then he jumps", "times": [[2, 3], [2, 2], [3, 3]]},
        {"video": "111@N00_1_aa.mov", "description": "a man walks", "times": [[0, 0], [0, 1]]},
        {"video": "222@N00_2_bb.mp4", "description": "a bird flies ", "times": [[1, 1]]},
        {"video": "111@N00_1_aa.mov", "description": "he waves", "times": [[2, 2], [3, 4]]},
        {"video": "333@N00_3_cc.3gp", "description": "a train passes", "times": [[0, 5]]},
    ]
    (root / "test_data.json").write_text(json.dumps(items))
    # a converted copy, a usual extension and the original file under its own name
    _touch_videos(root / "videos", ["111@N00_1_aa.mov.mp4", "222@N00_2_bb.mp4", "333@N00_3_cc.3gp"])
    return root


def test_didemo_paragraphs_in_order_of_average_start(didemo):
    ds = load_didemo(didemo, "test")
    assert (ds.name, ds.protocol) == ("didemo", "paragraph")
    assert ds.video_ids == ["111@N00_1_aa", "222@N00_2_bb", "333@N00_3_cc"]
    # average starts 0, 2.33, 2.5: ties would keep file order
    assert ds[0].captions == ["a man walks then he jumps he waves"]
    assert ds[1].captions == ["a bird flies"]
    assert [r.path.name for r in ds] == ["111@N00_1_aa.mov.mp4", "222@N00_2_bb.mp4", "333@N00_3_cc.3gp"]
    caps, rows = ds.caption_pairs()
    assert len(caps) == 3 and rows.tolist() == [0, 1, 2]


def test_didemo_list_restricts_videos(didemo):
    # entries as file names (CLIP4Clip), bare ids, or names with another extension
    (didemo / "test_list.txt").write_text("222@N00_2_bb.mp4\n333@N00_3_cc\n111@N00_1_aa.mp4\n")
    assert load_dataset("didemo", didemo, "test").video_ids == ["111@N00_1_aa", "222@N00_2_bb",
                                                                "333@N00_3_cc"]
    (didemo / "test_list.txt").write_text("222@N00_2_bb.mp4\n")
    assert load_dataset("didemo", didemo, "test").video_ids == ["222@N00_2_bb"]
    (didemo / "test_list.txt").write_text("nothing_here.mov\n")
    with pytest.raises(AnnotationError, match="test_list.txt lists none of the 5 videos"):
        load_didemo(didemo, "test")


def test_didemo_errors(didemo):
    with pytest.raises(AnnotationError, match="not found: .*train_data.json"):
        load_didemo(didemo, "train")
    path = didemo / "test_data.json"
    path.write_text(json.dumps({"video": "a.mov"}))
    with pytest.raises(AnnotationError, match="test_data.json should hold a list"):
        load_didemo(didemo, "test")
    path.write_text(json.dumps([{"video": "a.mov", "times": [[0, 0]]}]))
    with pytest.raises(AnnotationError, match="item 0 should be an object .*'description'"):
        load_didemo(didemo, "test")
    path.write_text(json.dumps([{"video": "a.mov", "description": "x", "times": "soon"}]))
    with pytest.raises(AnnotationError, match=r"item 0 \(a\) should have 'times'"):
        load_didemo(didemo, "test")
    path.write_text(json.dumps([{"video": "gone.mov", "description": "x", "times": [[0, 1]]},
                                {"video": "222@N00_2_bb.mp4", "description": "y", "times": [[0, 1]]}]))
    with pytest.raises(MissingVideosError, match="test_data.json.*gone"):
        load_didemo(didemo, "test")
    with pytest.warns(UserWarning, match="gone"):
        assert load_didemo(didemo, "test", missing="skip").video_ids == ["222@N00_2_bb"]


# ------------------------------------------------------------------------------------------------
# The dataset object
# ------------------------------------------------------------------------------------------------

def test_without_drops_and_records_the_reason(msrvtt):
    ds = load_msrvtt(msrvtt, "train")
    less = ds.without(["video0", "not-a-video"], reason="unreadable")
    assert less.video_ids == ["video3", "video1", "video2"] and len(ds) == 4
    assert less.excluded == {"video0": "unreadable"} and ds.excluded == {}
    caps, rows = less.caption_pairs()
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and "caption 0 of video0" not in caps
    assert (less.name, less.split, less.protocol, less.root) == (ds.name, ds.split, ds.protocol, ds.root)
    assert less.without([], "x").video_ids == less.video_ids


def test_dataset_protocol_indexing_and_repr(tmp_path):
    recs = [VideoRecord("a", tmp_path / "a.mp4", ["x", "y"]), VideoRecord("b", tmp_path / "b.mp4", ["z"])]
    ds = VideoTextDataset("msvd", "test", tmp_path, recs, "multi")
    assert len(ds) == 2 and ds[1].video_id == "b" and [r.video_id for r in ds] == ["a", "b"]
    caps, rows = ds.caption_pairs()
    assert caps == ["x", "y", "z"] and rows.tolist() == [0, 0, 1]
    assert "videos=2, captions=3" in repr(ds) and len(repr(ds)) < 200


def test_unknown_dataset(msrvtt):
    with pytest.raises(ValueError, match="name='kinetics'.*'msrvtt', 'msvd', 'didemo', 'synthetic'"):
        load_dataset("kinetics", msrvtt, "train")


def test_the_registry_says_what_each_dataset_records():
    from mofkit.data.datasets import DATASET_SPECS, DATASETS, dataset_spec

    assert DATASETS == tuple(DATASET_SPECS) == ("msrvtt", "msvd", "didemo", "synthetic")
    syn = dataset_spec("synthetic")
    assert syn.generated and syn.timelines and syn.families
    for name in ("msrvtt", "msvd", "didemo"):
        spec = dataset_spec(name)
        assert not (spec.generated or spec.timelines or spec.families), name
    assert dataset_spec("msrvtt").train_splits == ("9k", "7k")
    with pytest.raises(ValueError, match="msrvtt"):
        dataset_spec("kinetics")
