"""Frame compressors in training: MOF amortised's gradient, end-to-end and amortised runs on smoke."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mofkit.bilevel.amortised import amortised_hypergradient
from mofkit.bilevel.meta import whole_video_loss
from mofkit.compress import create_compressor
from mofkit.config import get_config


class _Toy(torch.nn.Module):
    """A tiny dual encoder (float64-friendly): linear patches, attention over frames."""

    def __init__(self, dim=6, vocab=12, pixels=3 * 4 * 4):
        super().__init__()
        self.patch = torch.nn.Linear(pixels, dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.tok = torch.nn.Embedding(vocab, dim)
        self.logit_scale = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, tokens, frames):
        b, t = frames.shape[:2]
        h = torch.tanh(self.patch(frames.reshape(b, t, -1)))
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        video = F.normalize((h + F.scaled_dot_product_attention(q, k, v)).mean(1), dim=-1)
        return F.normalize(self.tok(tokens).mean(1), dim=-1), video, self.logit_scale.exp()


def _loss(text, video, scale):
    logits = scale * text @ video.t()
    labels = torch.arange(len(text))
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def test_the_amortised_gradient_matches_finite_differences():
    """d L2(C_theta(V)) / d theta, through the virtual step and the compressor, float64."""
    torch.manual_seed(0)
    model = _Toy().double().eval()
    comp = create_compressor("slots", 2, descriptor_size=4, dim=8).double()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 12, (4, 5), generator=g)
    frames = torch.randn(4, 6, 3, 4, 4, generator=g, dtype=torch.float64)
    alpha = 0.5
    res = amortised_hypergradient(model, comp, _loss, tokens, frames, frames, alpha=alpha)
    assert all(p.grad is None for p in model.parameters())  # the model gets no gradient
    params = list(comp.parameters())
    grads = [p.grad.clone() for p in params]
    assert res.finite.all() and sum(a.abs().sum() for a in grads) > 0

    def l2(shift: float, d) -> float:
        """The whole-video loss after the virtual step, the compressor's weights moved by shift * d."""
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, di in zip(params, d):
                p.add_(shift * di)
            x = comp(frames)
        out = whole_video_loss(model, _loss, tokens, x, frames, alpha=alpha).item()
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        return out

    for trial in range(3):
        d = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
        h = 1e-5
        fd = (l2(h, d) - l2(-h, d)) / (2 * h)
        analytic = sum((a * di).sum().item() for a, di in zip(grads, d))
        assert abs(fd - analytic) / max(abs(fd), 1e-12) < 1e-5, (trial, fd, analytic)


# -- runs on smoke -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("compress")


def _cfg(root: Path, name: str, **over):
    return get_config("smoke", {"data.root": str(root / "corpus"), "data.cache_dir": str(root / "cache"),
                                "out_dir": str(root / name), "compress.input_frames": 16, **over})


@pytest.mark.slow
def test_a_fixed_compressor_trains_and_tests_on_its_own_frames(root):
    from mofkit.train.loop import Trainer, train

    cfg = _cfg(root, "max", **{"compress.name": "segment_max"})
    tr = Trainer(cfg, progress=False)
    assert tr.task.name == "compress" and tr.data.test_inputs is not None
    batch = next(iter(tr.data.train_loader([list(range(4))], 0, with_meta=False)))
    assert batch["frames"].shape[1] == 16  # N frames in, K out
    frames, _ = tr.task.step_inputs(batch, 0)
    assert frames.shape[1] == cfg.data.num_frames and not frames.requires_grad
    test = tr.data.test_inputs.frames_of([0, 1])
    expect = tr.preprocess.eval(test).unflatten(1, (4, 4)).amax(dim=2)  # 16 frames, 4 segments of 4
    assert torch.allclose(tr.eval_inputs(test), expect)
    res = train(cfg, progress=False)
    assert all(torch.isfinite(torch.tensor(v)) for v in res.final["t2v"].values())


@pytest.mark.slow
def test_a_learned_compressor_trains_end_to_end_and_resumes_exactly(root):
    from mofkit.train.loop import Trainer, train

    cfg = _cfg(root, "slots", **{"compress.name": "slots", "train.epochs": 2})
    start = copy.deepcopy(Trainer(cfg, progress=False).compressor.state_dict())
    assert "compressor" in [g["name"] for g in Trainer(cfg, progress=False).optimizer.param_groups]
    done = train(cfg, progress=False)
    ckpt = torch.load(Path(cfg.out_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    moved = [(ckpt["compressor"][k] - v).abs().max().item() for k, v in start.items()]
    assert max(moved) > 0  # the retrieval loss reached the compressor
    # interrupted after epoch 1 and resumed: the same compressor and metrics
    half = _cfg(root, "slots-resumed", **{"compress.name": "slots", "train.epochs": 2})
    Trainer(half, progress=False).fit(stop_after_epoch=0)
    again = train(half, progress=False)
    ckpt2 = torch.load(Path(half.out_dir) / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert all(torch.equal(ckpt2["compressor"][k], ckpt["compressor"][k]) for k in start)
    assert again.final["t2v"] == done.final["t2v"]


@pytest.mark.slow
def test_mof_amortised_moves_the_compressor_and_not_the_model_in_its_meta_step(root):
    from mofkit.train.loop import Trainer

    cfg = _cfg(root, "amortised", **{"compress.name": "slots", "compress.training": "amortised",
                                    "compress.lr": 1e-2})
    tr = Trainer(cfg, progress=False)
    assert tr.task.name == "compress-amortised"
    assert "compressor" not in [g.get("name") for g in tr.optimizer.param_groups]
    model_before = copy.deepcopy(tr.model.state_dict())
    comp_before = copy.deepcopy(tr.compressor.state_dict())
    batch = next(iter(tr.data.train_loader([list(range(8))], 0, with_meta=False)))
    frames, _ = tr.task.step_inputs(batch, 0)
    assert not frames.requires_grad
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in model_before.items())
    assert any(not torch.equal(v, tr.compressor.state_dict()[k]) for k, v in comp_before.items())
    stats = tr.task.epoch_stats()
    assert stats["meta_loss_whole"] > 0 and stats["meta_loss_compressed"] > 0


def test_compressor_settings_are_checked():
    from mofkit.train.loop import Trainer

    with pytest.raises(ValueError, match="choose one"):
        Trainer(get_config("smoke", {"compress.name": "slots", "mof.enabled": True}), progress=False)
    with pytest.raises(ValueError, match="compress.distill is a term of the end-to-end loss"):
        Trainer(get_config("smoke", {"compress.name": "slots", "compress.training": "amortised",
                                     "compress.distill": 1.0}), progress=False)
    with pytest.raises(ValueError, match="a weight, 0 or more"):
        Trainer(get_config("smoke", {"compress.name": "slots", "compress.distill": -1.0}), progress=False)


@pytest.mark.slow
def test_distillation_pulls_the_compressed_embedding_towards_the_whole_video(root):
    from mofkit.train.loop import Trainer

    cfg = _cfg(root, "distill", **{"compress.name": "slots", "compress.distill": 2.0})
    tr = Trainer(cfg, progress=False)
    batch = next(iter(tr.data.train_loader([list(range(8))], 0, with_meta=False)))
    frames, tokens = tr.task.step_inputs(batch, 0)
    tr.model.train()
    video = tr.model.encode_video(frames)
    extra = tr.task.extra_loss(batch, 0, video)
    x = tr.preprocess.train_with_seeds(batch["frames"], [(cfg.train.seed, 0, int(r)) for r in batch["index"]],
                                       **tr.data.aug)
    tr.model.eval()
    with torch.no_grad():
        target = tr.model.encode_video(x)
    assert torch.allclose(extra, 2.0 * (1 - (video * target).sum(-1)).mean(), atol=1e-5)
    extra.backward()  # the target is a constant: the gradient reaches the compressor and the model
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in tr.compressor.parameters())
    assert tr.task.epoch_stats()["distill_gap"] == pytest.approx(float(extra) / 2.0, rel=1e-4)
    plain = Trainer(_cfg(root, "no-distill", **{"compress.name": "slots"}), progress=False)
    assert plain.task.extra_loss(batch, 0, video) is None


def test_the_inference_cost_adds_the_compressor():
    from mofkit.compress import compressor_from_config
    from mofkit.lab.experiments import compressor_gflops, inference_gflops, result_row

    from mofkit.eval.metrics import DIRECTIONS, METRIC_KEYS

    final = {d: {k: 1.0 for k in METRIC_KEYS} for d in DIRECTIONS}
    plain = get_config("cpu")
    slots = get_config("cpu", {"compress.name": "slots"})
    expect = compressor_from_config(slots.compress, 4).flops(32, 64)["total"] / 1e9
    assert compressor_gflops(plain) == 0 and compressor_gflops(slots) == pytest.approx(expect)
    a, b = result_row(plain, final, 1.0), result_row(slots, final, 1.0)
    assert b["gflops"] == pytest.approx(a["gflops"] + expect) and b["compressor_gflops"] > 0
    assert b["gflops"] < inference_gflops(get_config("cpu", {"data.num_frames": 5}))[0]  # below uniform K = 5


def test_event_coverage_says_who_sees_each_event():
    import numpy as np

    from mofkit.lab.compressor_view import event_coverage

    positions = np.arange(8)
    sel = np.zeros((2, 8))
    sel[0, 1], sel[1, 5], sel[1, 6] = 1.0, 0.4, 0.6  # frame 1 looks at 1; frame 2 splits 5 and 6
    events = [{"start": 1, "end": 2}, {"start": 5, "end": 6}, {"start": 6, "end": 8}, {"start": 3, "end": 5}]
    cov = event_coverage(positions, sel, np.array([2, 6]), events)
    assert [c["compressor"] for c in cov] == [True, False, True, False]  # 0.4 < one half
    assert [c["slot"] for c in cov] == [0, None, 1, None]
    assert [c["uniform"] for c in cov] == [False, False, True, False]
    assert event_coverage(positions, None, np.array([3]), events)[3] == {"uniform": True, "compressor": None,
                                                                          "slot": None}


@pytest.mark.slow
def test_compressor_examples_show_what_a_trained_compressor_made(root):
    import numpy as np

    from mofkit.data.synthetic import load_timeline
    from mofkit.lab.compressor_view import compressor_examples, load_compressor
    from mofkit.train.loop import train
    from mofkit.viz.frames import compressor_outputs

    cfg = _cfg(root, "view", **{"compress.name": "slots", "compress.mode": "hard", "train.epochs": 1})
    train(cfg, progress=False)
    run_cfg, comp = load_compressor(cfg.out_dir)
    assert run_cfg.compress.mode == "hard" and not comp.training
    examples = compressor_examples(cfg.out_dir, n_videos=3)
    assert len(examples) == 3
    timeline = load_timeline(cfg.data.root)
    k, n, s = cfg.data.num_frames, cfg.compress.input_frames, 32
    for ex in examples:
        assert ex["whole"].shape == (n, s, s, 3) and ex["outputs"].shape == (k, s, s, 3)
        assert ex["uniform"].shape == (k, s, s, 3) and ex["selection"].shape == (k, n)
        assert np.allclose(ex["selection"].sum(1), 1, atol=1e-5) and len(ex["positions"]) == n
        # hard slots output real input frames: each output is the input frame its row selects
        for j in range(k):
            i = int(ex["selection"][j].argmax())
            assert np.abs(ex["outputs"][j].astype(int) - ex["whole"][i].astype(int)).max() <= 1
        assert ex["events"] == timeline[ex["video_id"]] and len(ex["coverage"]) == len(ex["events"])
    # the videos whose decisive event uniform frames miss come first
    missed = [not next(c["uniform"] for e, c in zip(ex["events"], ex["coverage"]) if e["decisive"])
              for ex in examples]
    assert missed == sorted(missed, reverse=True)
    ex = examples[0]
    fig = compressor_outputs(ex["whole"], ex["uniform"], ex["outputs"], selection=ex["selection"],
                             positions=ex["positions"], uniform_positions=ex["uniform_positions"],
                             events=ex["events"], coverage=ex["coverage"], caption=ex["caption"])
    assert len(fig.axes) == 5  # three strips, the timeline and its colour bar
    plain = _cfg(root, "plain", **{"train.epochs": 1})
    train(plain, progress=False)
    with pytest.raises(ValueError, match="no frame compressor"):
        load_compressor(plain.out_dir)
