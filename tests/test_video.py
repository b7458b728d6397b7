"""Video reading with decord and PyAV on real mp4 files whose pixels carry their frame index."""
import numpy as np
import pytest
import torch

from conftest import all_backends, decoded_index, decoded_indices, need_backend
from mofkit.data.sampling import sample_indices
from mofkit.data.video import (VideoReadError, available_backends, output_size, probe_video,
                               read_frames, read_video)

BACKENDS = all_backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    need_backend(request.param)
    return request.param


def test_probe(videos, backend):
    info = probe_video(videos["index40"], backend)
    assert (info.num_frames, info.width, info.height) == (40, 64, 48)
    assert info.fps == pytest.approx(8.0)
    assert info.duration == pytest.approx(5.0)
    assert info.path == str(videos["index40"])
    assert probe_video(videos["portrait"], backend).to_dict()["height"] == 64


def test_every_frame_is_the_right_one(videos, backend):
    frames = read_frames(videos["index40"], range(40), backend=backend)
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (40, 48, 64, 3)
    assert decoded_indices(frames).tolist() == list(range(40))
    # lossless YUV + the RGB round trip: within a grey level or two of what was written
    assert (frames[:, :, :32, 0].float() - 8 * torch.arange(40).view(40, 1, 1) % 256).abs().max() <= 2


def test_seeks_across_keyframes(videos, backend):
    idx = np.random.default_rng(0).integers(0, 100, 25)  # unsorted, with repeats, across GOPs of 8
    frames = read_frames(videos["gop"], idx, backend=backend)
    assert decoded_indices(frames).tolist() == idx.tolist()


def test_repeated_and_unsorted_indices(videos, backend):
    idx = [5, 2, 5, 39, 0, 2]
    frames = read_frames(videos["index40"], np.array(idx), backend=backend)
    assert frames.shape[0] == len(idx)
    assert decoded_indices(frames).tolist() == idx
    assert torch.equal(frames[0], frames[2])


def test_empty_index_list(videos, backend):
    frames = read_frames(videos["index40"], [], backend=backend)
    assert tuple(frames.shape) == (0, 48, 64, 3)


@pytest.mark.parametrize("key,size,shape", [
    ("index40", 32, (32, 43)),  # landscape 48x64: short side (height) -> 32
    ("portrait", 32, (43, 32)),  # portrait 64x48: short side (width) -> 32
    ("index40", (20, 30), (20, 30)),  # explicit (height, width)
    ("index40", 48, (48, 64)),  # already the asked size
])
def test_resize_on_read(videos, backend, key, size, shape):
    frames = read_frames(videos[key], [0, 7, 11], size=size, backend=backend)
    assert tuple(frames.shape) == (3, *shape, 3)
    assert decoded_indices(frames).tolist() == [0, 7, 11]


def test_output_size():
    assert output_size(64, 48, 32) == (43, 32)
    assert output_size(48, 64, 32) == (32, 43)
    assert output_size(64, 48, None) == (64, 48)
    assert output_size(64, 48, (10, 20)) == (20, 10)


@pytest.mark.parametrize("key", ["index40", "gradient", "portrait", "odd48", "gop"])
def test_backends_agree_exactly_at_native_size(videos, key):
    if len(available_backends()) < 2:
        pytest.skip("needs both decord and PyAV")
    n = probe_video(videos[key], "pyav").num_frames
    a = read_frames(videos[key], range(n), backend="decord")
    b = read_frames(videos[key], range(n), backend="pyav")
    assert torch.equal(a, b)


@pytest.mark.parametrize("size", [32, 24, (20, 30)])
def test_backends_agree_closely_when_resized(videos, size):
    if len(available_backends()) < 2:
        pytest.skip("needs both decord and PyAV")
    a = read_frames(videos["gradient"], range(24), size=size, backend="decord").float()
    b = read_frames(videos["gradient"], range(24), size=size, backend="pyav").float()
    assert a.shape == b.shape
    diff = (a - b).abs()
    assert diff.mean() < 1.5  # different scalers: about one grey level (0.7-0.8 measured)
    assert diff.quantile(0.99) < 16  # the larger gaps sit at the one sharp edge (index halves)


def test_decord_padded_widths(videos):
    """decord pads RGB rows of some widths (48 px here); frames must still come back right."""
    need_backend("decord")
    frames = read_frames(videos["odd48"], [9, 0, 3], backend="decord")
    assert tuple(frames.shape) == (3, 32, 48, 3)
    assert decoded_indices(frames).tolist() == [9, 0, 3]
    # resizing a 64x96 video's short side to 32 also gives a 48-pixel width
    resized = read_frames(videos["odd48"], [4], size=(32, 48), backend="decord")
    assert decoded_index(resized[0]) == 4


def test_short_video(videos, backend):
    frames, idx = read_video(videos["short"], 8, "uniform", backend=backend)
    assert idx.tolist() == sample_indices(3, 8, "uniform").tolist()
    assert decoded_indices(frames).tolist() == idx.tolist()


def test_read_video_rand_reproducible(videos, backend):
    f1, i1 = read_video(videos["index40"], 8, "rand", rng=np.random.default_rng(3), backend=backend)
    f2, i2 = read_video(videos["index40"], 8, "rand", rng=np.random.default_rng(3), backend=backend,
                        num_frames=40)
    assert i1.tolist() == i2.tolist() and torch.equal(f1, f2)
    assert decoded_indices(f1).tolist() == i1.tolist()


def test_index_out_of_range(videos, backend):
    with pytest.raises(VideoReadError, match="index40"):
        read_frames(videos["index40"], [0, 40], backend=backend)
    with pytest.raises(VideoReadError, match="index40"):
        read_frames(videos["index40"], [-1], backend=backend)


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "missing", "directory"])
def test_bad_inputs_raise_naming_the_file(bad_videos, backend, kind):
    path = bad_videos[kind]
    with pytest.raises(VideoReadError) as err:
        probe_video(path, backend)
    assert str(path) in str(err.value)
    assert err.value.path == str(path) and err.value.reason


def test_truncated_with_index_first_reads_up_to_the_cut(bad_videos, backend):
    """The header promises 40 frames; the probe reports those wholly inside the file, which decode."""
    path = bad_videos["truncated_faststart"]
    info = probe_video(path, backend)
    assert info.truncated and info.header_frames == 40 and 0 < info.num_frames < 40
    frames = read_frames(path, range(info.num_frames), backend=backend)
    assert decoded_indices(frames).tolist() == list(range(info.num_frames))
    with pytest.raises(VideoReadError, match="out of range"):
        read_frames(path, [0, info.num_frames], backend=backend)


def test_unknown_backend(videos):
    with pytest.raises(ValueError, match="decord"):
        probe_video(videos["index40"], backend="opencv")


def _naive_frames(path) -> np.ndarray:
    """Every frame by the plainest route: PyAV's own decode loop and RGB conversion, no seeking,
    no threads set, no sampling (the reference the one-open reader is checked against)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize("key", ["index40", "gradient", "portrait", "odd48", "gop", "short"])
def test_sampled_frames_equal_a_naive_full_decode(videos, backend, key):
    """At native size the one-open read gives exactly the frames a full decode does, for every
    sampling, whichever backend decodes."""
    from mofkit.data.video import decode_video

    need_backend("pyav")
    naive = _naive_frames(videos[key])  # (n, H, W, 3)
    for k, mode in [(1, "uniform"), (4, "uniform"), (8, "rand"), (32, "uniform"), (32, "rand")]:
        got = decode_video(videos[key], k, mode, rng=np.random.default_rng(k), backend=backend)
        assert got.num_frames == len(naive) and (got.height, got.width) == naive.shape[1:3]
        assert got.indices.tolist() == sample_indices(len(naive), k, mode,
                                                      rng=np.random.default_rng(k)).tolist()
        assert np.array_equal(got.frames.numpy(), naive[got.indices]), (key, k, mode)
