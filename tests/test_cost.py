"""Cost: FLOPs counted by hand on small modules, attention included, open_clip ViT-B-32 against
the published figures, parameter counts by part, and a throughput smoke run."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mofkit.eval import count_flops, encode_throughput, param_counts, text_flops, video_flops


def test_linear_is_two_flops_per_multiply_add():
    n, i, o = 3, 5, 7
    assert count_flops(nn.Linear(i, o), torch.zeros(n, i)) == 2 * n * i * o


def test_conv2d():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # each of the 2 * 8 * 6 * 6 outputs is a 3 x 3 x 3 dot product
    assert count_flops(conv, torch.zeros(2, 3, 6, 6)) == 2 * (2 * 8 * 6 * 6) * (3 * 3 * 3)


def test_scaled_dot_product_attention():
    b, h, length, d = 2, 3, 5, 4
    q = torch.zeros(b, h, length, d)
    # q k^T and (softmax) v: two products of (L x d) by (d x L) per batch and head
    assert count_flops(F.scaled_dot_product_attention, q, q, q) == 2 * (2 * b * h * length * length * d)


def test_multihead_attention_inference_path_is_counted():
    b, length, e = 2, 5, 16
    mha = nn.MultiheadAttention(e, num_heads=4, batch_first=True).eval()
    x = torch.zeros(b, length, e)
    projections = 2 * b * length * e * (3 * e) + 2 * b * length * e * e
    attention = 2 * (2 * b * length * length * e)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    assert count_flops(mha, x, x, x, need_weights=False) == projections + attention
    assert torch.backends.mha.get_fastpath_enabled() == fastpath  # restored


class _Temporal(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.mix = nn.Linear(dim, dim)

    def forward(self, x, mask=None):  # x (B, T, D)
        return self.mix(x).mean(1)


class _TinyRetrieval(nn.Module):
    """The retrieval model's attribute layout with a Linear per part, so FLOPs are known by hand."""

    def __init__(self, size=8, dim=6, vocab=11, width=4):
        super().__init__()
        self.clip = nn.Module()
        self.clip.visual = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, dim))
        self.clip.token_embedding = nn.Embedding(vocab, width)
        self.clip.positional_embedding = nn.Parameter(torch.zeros(77, width))
        self.clip.transformer = nn.Linear(width, width)
        self.clip.ln_final = nn.LayerNorm(width)
        self.clip.text_projection = nn.Parameter(torch.randn(width, dim))
        self.clip.logit_scale = nn.Parameter(torch.zeros(()))
        self.temporal = _Temporal(dim)

    def encode_video(self, frames):
        b, t = frames.shape[:2]
        x = self.clip.visual(frames.reshape(b * t, *frames.shape[2:]))  # (B*T, D)
        return self.temporal(x.reshape(b, t, -1))  # (B, T, D) -> (B, D)

    def encode_text(self, tokens):
        x = self.clip.token_embedding(tokens) + self.clip.positional_embedding[: tokens.shape[1]]
        x = self.clip.ln_final(self.clip.transformer(x))  # (B, L, W)
        return x[:, -1] @ self.clip.text_projection


def test_video_flops_by_hand_and_linear_in_k():
    size, dim = 8, 6
    model = _TinyRetrieval(size=size, dim=dim)
    per_frame = 2 * 3 * size * size * dim
    for k in (1, 4, 8):
        got = video_flops(model, num_frames=k, image_size=size)
        assert got == {"image_tower_per_frame": per_frame, "temporal_head": 2 * k * dim * dim,
                       "total": k * per_frame + 2 * k * dim * dim}
    assert model.training  # mode restored


def test_text_flops_by_hand():
    model = _TinyRetrieval(dim=6, width=4)
    length = 10
    # the tower's Linear on every token, then one (1 x W) @ (W x D) projection
    assert text_flops(model, context_length=length) == 2 * length * 4 * 4 + 2 * 4 * 6


def test_param_counts_by_part():
    model = _TinyRetrieval(size=8, dim=6, vocab=11, width=4)
    model.clip.visual.requires_grad_(False)
    visual = 3 * 8 * 8 * 6 + 6
    text = 11 * 4 + 77 * 4 + (4 * 4 + 4) + (4 + 4) + 4 * 6
    temporal = 6 * 6 + 6
    got = param_counts(model)
    assert got == {"total": visual + text + temporal + 1, "trainable": text + temporal + 1,
                   "visual": visual, "text": text, "temporal": temporal}
    bare = param_counts(nn.Linear(2, 3))  # no parts: they count 0
    assert bare == {"total": 9, "trainable": 9, "visual": 0, "text": 0, "temporal": 0}


def test_encode_throughput_smoke():
    model = _TinyRetrieval()
    got = encode_throughput(model, num_frames=4, image_size=8, batch_size=2, iters=2, warmup=1)
    assert got["videos_per_s"] > 0
    assert got["frames_per_s"] == pytest.approx(4 * got["videos_per_s"])
    assert got["device"] == "cpu" and got["precision"] == "fp32"
    with pytest.raises(ValueError, match="CUDA only"):
        encode_throughput(model, 4, 8, device="cpu", precision="bf16")


def test_errors():
    with pytest.raises(AttributeError, match="encode_video"):
        video_flops(nn.Linear(2, 2), 4, 8)
    with pytest.raises(ValueError, match="num_frames"):
        video_flops(_TinyRetrieval(), 0, 8)
    with pytest.raises(AttributeError, match="encode_text"):
        text_flops(nn.Linear(2, 2), 77)


@pytest.fixture(scope="module")
def vit_b_32():
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32").eval()  # random init, nothing downloaded


def test_open_clip_vit_b_32_matches_published_gflops(vit_b_32):
    # MOF.md quotes 8.82 GFLOPs per 224 px frame and 5.96 for the text tower: open_clip's
    # 4.41 G and 2.98 G multiply-adds at 2 FLOPs each
    image = count_flops(vit_b_32.visual, torch.zeros(1, 3, 224, 224))
    assert round(image / 1e9, 2) == 8.82
    assert round(text_flops(vit_b_32, context_length=77) / 1e9, 2) == 5.96
    counts = param_counts(vit_b_32)
    assert counts["visual"] + counts["text"] + 1 == counts["total"]  # + logit_scale
    assert round(counts["visual"] / 1e6, 1) == 87.8


def test_mof_tiny_video_flops_linear_in_k():
    models = pytest.importorskip("mofkit.models")
    bundle = models.create_retrieval_model("mof-tiny")
    model, size = bundle.model, bundle.image_size
    f4 = video_flops(model, num_frames=4, image_size=size)
    f8 = video_flops(model, num_frames=8, image_size=size)
    assert f4["image_tower_per_frame"] == f8["image_tower_per_frame"] > 0
    assert f4["temporal_head"] >= 0
    # the image tower is exactly linear in K; a temporal transformer adds K^2 attention terms,
    # which are small next to it
    assert f8["total"] - f8["temporal_head"] == 2 * (f4["total"] - f4["temporal_head"])
    assert f8["total"] == pytest.approx(2 * f4["total"], rel=0.05)


class _Recorder(nn.Module):
    """A stand-in retrieval model: records the frames it encodes."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def encode_video(self, x):
        self.shapes.append(tuple(x.shape))
        return x.flatten(2).mean(-1)


def test_end_to_end_throughput_decodes_n_frames_and_compresses_them_to_k(tmp_path):
    from conftest import write_video
    from mofkit.compress import create_compressor
    from mofkit.data.video import available_backends
    from mofkit.eval.cost import end_to_end_throughput

    paths = [write_video(tmp_path / f"v{i}.mp4", 16, seed=i) for i in range(3)]
    backend = available_backends()[0]
    pre = lambda u8: u8.permute(0, 1, 4, 2, 3).float() / 255  # noqa: E731  (B, T, H, W, 3) -> (B, T, 3, H, W)
    model = _Recorder()
    plain = end_to_end_throughput(model, paths, 4, preprocess=pre, batch_size=2, backend=backend)
    assert set(model.shapes) == {(2, 4, 3, 48, 64), (1, 4, 3, 48, 64)}
    assert plain["compress_seconds"] < 1e-3 and plain["videos"] == 3 and plain["videos_per_s"] > 0
    model.shapes.clear()
    comp = create_compressor("segment_max", num_frames=4)
    got = end_to_end_throughput(model, paths, 4, preprocess=pre, batch_size=2, backend=backend,
                                compressor=comp, input_frames=12)
    assert set(model.shapes) == {(2, 4, 3, 48, 64), (1, 4, 3, 48, 64)}  # K frames made from 12
    assert got["compress_seconds"] > 0 and comp.training  # its mode is given back
    total = got["decode_seconds"] + got["compress_seconds"] + got["encode_seconds"]
    assert got["videos_per_s"] == pytest.approx(3 / total)
    with pytest.raises(ValueError, match="input_frames"):
        end_to_end_throughput(model, paths, 4, preprocess=pre, compressor=comp)


class _Keeper(nn.Module):
    """A stand-in retrieval model: keeps the frames it encodes."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def encode_video(self, x):
        self.seen.append(x.clone())
        return x.flatten(2).mean(-1)


def test_end_to_end_throughput_with_decode_workers_encodes_the_same_frames(tmp_path):
    from conftest import write_video
    from mofkit.data.video import VideoReadError, available_backends
    from mofkit.eval.cost import end_to_end_throughput

    paths = [write_video(tmp_path / f"v{i}.mp4", 12 + i, seed=i, pattern="noise") for i in range(10)]
    pre = lambda u8: u8.permute(0, 1, 4, 2, 3).float() / 255  # noqa: E731  (B, T, H, W, 3) -> (B, T, 3, H, W)
    for backend in available_backends():
        runs = {}
        for workers in (0, 2):
            model = _Keeper()
            got = end_to_end_throughput(model, paths, 4, preprocess=pre, batch_size=4, backend=backend,
                                        workers=workers)
            assert got["workers"] == workers and got["videos"] == 10
            runs[workers] = torch.cat(model.seen[1:])  # after the warm-up batch: (10, 4, 3, 48, 64)
        assert runs[0].shape == (10, 4, 3, 48, 64) and torch.equal(runs[0], runs[2])
    (tmp_path / "bad.mp4").write_bytes(b"")
    with pytest.raises(VideoReadError, match="bad.mp4: file is empty"):
        end_to_end_throughput(_Keeper(), paths + [tmp_path / "bad.mp4"], 4, preprocess=pre,
                              batch_size=4, workers=2)


def test_remeasure_speeds_rewrites_the_speed_columns_and_nothing_else(tmp_path):
    """benchmarks/remeasure_speeds.py re-times a committed table's videos/s with today's decoding:
    one measurement per (what inference runs, K), the metrics untouched."""
    import subprocess
    import sys
    from pathlib import Path

    import pandas as pd

    from mofkit.config import get_config
    from mofkit.data.datasets import prepare_dataset

    cfg = get_config("smoke", {"data.root": str(tmp_path / "corpus"), "synthetic.n_train": 4,
                               "synthetic.n_test": 6, "data.backend": "decord"})
    prepare_dataset(cfg, progress=False)
    cfg.to_json(tmp_path / "config.json")
    table = pd.DataFrame({"method": ["uniform K=4", "segment_max", "MOF", "uniform K=2"], "K": [4, 4, 4, 2],
                          "t2v_R1": [1.5, 2.5, 3.5, 0.5], "videos_per_s": [1.0] * 4,
                          "videos_per_s_device": ["then"] * 4})
    table.to_csv(tmp_path / "t.csv", index=False)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "remeasure_speeds.py"
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "t.csv"), "--config",
                          str(tmp_path / "config.json"), "--videos", "4"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "pyav" in res.stdout  # today's default decoder, not the one the runs were made with
    out = pd.read_csv(tmp_path / "t.csv")
    pd.testing.assert_series_equal(out["t2v_R1"], table["t2v_R1"])
    assert (out["videos_per_s"] > 1.0).all() and (out["videos_per_s_device"] != "then").all()
    assert out["videos_per_s"][0] == out["videos_per_s"][2]  # uniform and MOF run the same inference
    assert out["videos_per_s"][0] != out["videos_per_s"][1]
    assert res.stdout.count("| t.csv |") == 3  # three measurements for four rows
