"""Training and test datasets over frame caches; loaders independent of worker count and rank."""
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data.distributed import DistributedSampler

from conftest import decoded_indices, make_dataset, write_video
from mofkit.data.cache import FrameCache
from mofkit.data.loaders import EvalClips, TrainClips, epoch_order, item_rng, make_loader
from mofkit.data.sampling import sample_from_grid, sample_indices, segment_bounds

GRID, K, N, S, L = 8, 3, 4, 32, 5
LENGTHS = [40, 12, 25, 30, 9, 64, 17]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """7 videos, 1-3 captions each; a dense grid cache (T=8) and a uniform K-frame cache."""
    d = tmp_path_factory.mktemp("loaders")
    paths = {f"v{i}": write_video(d / f"v{i}.mp4", n, size=(32, 40)) for i, n in enumerate(LENGTHS)}
    captions = {v: [f"{v} caption {j}" for j in range(1 + i % 3)] for i, v in enumerate(paths)}
    ds = make_dataset(d, paths, captions, name="loaders", split="train")
    texts, caption_video = ds.caption_pairs()
    tokens = torch.arange(len(texts)).view(-1, 1).repeat(1, L)  # token row q holds q: says which caption
    kw = {"size": S, "cache_dir": d / "cache", "progress": False}
    grid = FrameCache.build(ds, num_frames=GRID, **kw)
    uni = FrameCache.build(ds, num_frames=K, **kw)
    return ds, tokens, caption_video, grid, uni


def _clips(setup, **kw):
    ds, tokens, caption_video, grid, _ = setup
    args = {"num_frames": K, "sampling": "rand", "meta_frames": N, "seed": 0, **kw}
    return TrainClips(grid, ds, tokens, caption_video, **args)


def _collect(loader):
    out = {}
    for batch in loader:
        for j, i in enumerate(batch["index"].tolist()):
            out[i] = {k: v[j].clone() for k, v in batch.items() if k != "index"}
    return out


def test_item_shapes_and_content(setup):
    ds, tokens, caption_video, grid, _ = setup
    clips = _clips(setup)
    assert len(clips) == len(LENGTHS)
    for i, n in enumerate(LENGTHS):
        item = clips[i]
        assert item["index"] == i
        assert item["frames"].dtype == torch.uint8 and tuple(item["frames"].shape) == (K, S, S, 3)
        assert tuple(item["meta_frames"].shape) == (N, S, S, 3)
        assert caption_video[item["caption"]] == i  # a caption of this video
        assert item["tokens"].tolist() == [item["caption"]] * L
        # the frames are grid frames, one from each of K segments of the grid, in order
        grid_src = grid.frame_indices[grid.row_of(f"v{i}")]
        src = decoded_indices(item["frames"])
        pos = [int(np.flatnonzero(grid_src == s)[0]) for s in src]
        starts, ends = segment_bounds(GRID, K)
        assert all(a <= p < b for p, a, b in zip(pos, starts, ends))
        assert set(decoded_indices(item["meta_frames"])) <= set(grid_src.tolist())


def test_item_is_a_function_of_seed_epoch_index(setup):
    clips = _clips(setup)
    a = clips.get(3, epoch=5)
    b = _clips(setup).get(3, epoch=5)  # a fresh object, as in another process
    assert all(torch.equal(a[k], b[k]) for k in ("frames", "meta_frames", "tokens"))
    # expected positions straight from the documented rng streams
    pos = sample_from_grid(GRID, K, "rand", rng=item_rng(0, 5, 3, 1))
    assert torch.equal(a["frames"], clips.cache.rows([clips.cache_rows[3]], pos)[0])
    # no meta frames asked: the caption and frames of the item stay the same
    c = _clips(setup, meta_frames=0).get(3, epoch=5)
    assert "meta_frames" not in c and torch.equal(c["frames"], a["frames"]) and c["caption"] == a["caption"]


def test_epochs_and_seeds_change_the_draw(setup):
    clips = _clips(setup)
    other_seed = _clips(setup, seed=1)

    def draw(c, epoch):
        return [(c.get(i, epoch)["caption"], decoded_indices(c.get(i, epoch)["frames"]).tolist())
                for i in range(len(c))]

    e0, e1, s1 = draw(clips, 0), draw(clips, 1), draw(other_seed, 0)
    assert e0 != e1 and e0 != s1
    # over many epochs every caption of a 3-caption video is drawn
    caps = {clips.get(2, e)["caption"] for e in range(40)}
    assert len(caps) == 3


def test_uniform_from_the_k_cache_is_the_cached_frames(setup):
    ds, tokens, caption_video, grid, uni = setup
    clips = TrainClips(uni, ds, tokens, caption_video, num_frames=K, sampling="uniform")
    for i, n in enumerate(LENGTHS):
        assert decoded_indices(clips.get(i, 0)["frames"]).tolist() == sample_indices(n, K).tolist()
        assert torch.equal(clips.get(i, 0)["frames"], clips.get(i, 7)["frames"])
    # meta frames from a separate dense grid
    both = TrainClips(uni, ds, tokens, caption_video, num_frames=K, sampling="uniform",
                      meta_frames=GRID, meta_sampling="uniform", meta_cache=grid)
    assert torch.equal(both.get(1, 0)["meta_frames"], grid["v1"])


def test_batches_do_not_depend_on_workers(setup):
    clips = _clips(setup)
    runs = {w: list(make_loader(clips, batch_size=3, shuffle=True, seed=4, epoch=2, num_workers=w))
            for w in (0, 2)}
    assert len(runs[0]) == len(runs[2]) == 3
    for b0, b2 in zip(runs[0], runs[2]):
        assert b0.keys() == b2.keys()
        assert all(torch.equal(b0[k], b2[k]) for k in b0)
    # an item is the same in any batch composition
    by_item = _collect(make_loader(clips, batch_size=2, seed=9, epoch=2))  # other batches, order
    shuffled = _collect(runs[0])
    assert sorted(by_item) == sorted(shuffled)
    assert all(torch.equal(by_item[i][k], shuffled[i][k]) for i in by_item for k in by_item[i])


def test_loader_order(setup):
    clips = _clips(setup)
    order = [b["index"].tolist() for b in make_loader(clips, batch_size=3, shuffle=True, seed=1, epoch=0)]
    flat = sum(order, [])
    assert flat == epoch_order(len(clips), 1, 0).tolist() and sorted(flat) == list(range(len(clips)))
    again = sum([b["index"].tolist() for b in make_loader(clips, 3, shuffle=True, seed=1, epoch=0)], [])
    nxt = sum([b["index"].tolist() for b in make_loader(clips, 3, shuffle=True, seed=1, epoch=1)], [])
    assert again == flat and nxt != flat
    plain = [b["index"].tolist() for b in make_loader(clips, 3, drop_last=True)]
    assert plain == [[0, 1, 2], [3, 4, 5]]
    explicit = [b["index"].tolist() for b in make_loader(clips, 99, batches=[np.array([6, 0]), [2]])]
    assert explicit == [[6, 0], [2]]


def test_loader_binds_its_epoch(setup):
    clips = _clips(setup)
    loader = make_loader(clips, batch_size=7, epoch=3)
    clips.set_epoch(4)  # changing the dataset's epoch later does not move a built loader
    batch = next(iter(loader))
    assert torch.equal(batch["frames"][2], clips.get(2, 3)["frames"])
    assert torch.equal(clips[2]["frames"], clips.get(2, 4)["frames"])


def test_loader_leaves_global_rng_alone(setup):
    clips = _clips(setup)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    list(make_loader(clips, batch_size=2, shuffle=True))
    assert torch.equal(torch.rand(3), expected)


def test_distributed_sampler_ranks_see_the_same_items(setup):
    clips = _clips(setup)
    single = _collect(make_loader(clips, batch_size=7, epoch=1))
    seen = {}
    for rank in range(2):
        sampler = DistributedSampler(clips, num_replicas=2, rank=rank, shuffle=True, seed=3)
        seen.update(_collect(make_loader(clips, batch_size=2, epoch=1, sampler=sampler)))
    assert sorted(seen) == list(range(len(clips)))
    assert all(torch.equal(seen[i]["frames"], single[i]["frames"]) and
               torch.equal(seen[i]["tokens"], single[i]["tokens"]) for i in seen)


def test_eval_clips(setup):
    ds, _, _, grid, uni = setup
    direct = EvalClips(uni, ds, K)
    for i, n in enumerate(LENGTHS):
        item = direct[i]
        assert item["index"] == i and tuple(item["frames"].shape) == (K, S, S, 3)
        assert decoded_indices(item["frames"]).tolist() == sample_indices(n, K).tolist()
    from_grid = EvalClips(grid, ds, K)
    pos = sample_from_grid(GRID, K, "uniform")
    assert torch.equal(from_grid[5]["frames"], grid["v5"][pos])
    batch = next(iter(make_loader(direct, batch_size=4)))
    assert tuple(batch["frames"].shape) == (4, K, S, S, 3) and batch["index"].tolist() == [0, 1, 2, 3]
    assert torch.equal(direct.frames_of([4, 1]), torch.stack([direct[4]["frames"], direct[1]["frames"]]))


def test_errors(setup, tmp_path):
    ds, tokens, caption_video, grid, _ = setup
    with pytest.raises(ValueError, match="no caption"):
        TrainClips(grid, ds, tokens[:-3], caption_video[:-3], num_frames=K)  # v6 loses its captions
    with pytest.raises(ValueError, match="tokens"):
        TrainClips(grid, ds, tokens[:, 0], caption_video, num_frames=K)
    with pytest.raises(ValueError, match="dense"):
        TrainClips(grid, ds, tokens, caption_video, num_frames=K, sampling="dense")
    other = make_dataset(tmp_path, {"v0": ds[0].path, "stranger": ds[1].path})
    with pytest.raises(KeyError, match="stranger"):
        EvalClips(grid, other, K)
    with pytest.warns(RuntimeWarning, match="same frames every epoch"):
        TrainClips(setup[4], ds, tokens, caption_video, num_frames=K, sampling="rand")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainClips(grid, ds, tokens, caption_video, num_frames=K, sampling="rand")


def test_no_warning_when_the_grid_holds_every_frame(tmp_path, videos):
    ds = make_dataset(tmp_path, {"s": videos["short"]})  # 3 frames
    grid = FrameCache.build(ds, num_frames=3, size=S, cache_dir=tmp_path / "c", progress=False)
    _, caption_video = ds.caption_pairs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rand over the video itself could not vary either
        clips = TrainClips(grid, ds, torch.zeros(1, L, dtype=torch.long), caption_video,
                           num_frames=3, sampling="rand")
    assert decoded_indices(clips.get(0, 0)["frames"]).tolist() == [0, 1, 2]
