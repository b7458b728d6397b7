"""Model factory, temporal heads, retrieval model and the properties MOF's meta step relies on."""
import dataclasses
import math
import socket
import time
import warnings

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from mofkit.config import get_config
from mofkit.models import (MeanPool, PretrainedUnavailableError, SeqTransformer, TINY_ARCHS,
                           contrastive_loss, create_from_config, create_retrieval_model,
                           create_temporal_head, list_models, param_groups, quickgelu_mismatch,
                           resolve_pretrained)
from mofkit.models import factory

EOT = 49407  # open_clip's end-of-text id, the largest in its vocabulary


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_retrieval_model("mof-tiny-32", context_length=32)


@pytest.fixture(scope="module")
def clip77(tmp_path_factory):
    """A bare open_clip mof-tiny-32 with open_clip's 77 positions (as OpenAI weights have), saved."""
    torch.manual_seed(1)
    clip = open_clip.create_model("mof-tiny-32").eval()
    with torch.no_grad():  # make the positional embedding matter, as trained weights' does
        clip.positional_embedding.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("w") / "open_clip.bin"
    torch.save(clip.state_dict(), path)
    return clip, path


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True, raising=False)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# -- registry ----------------------------------------------------------------------------------

def test_small_archs_are_registered_with_open_clip_smallest_first():
    assert TINY_ARCHS == ("mof-tiny-32", "mof-tiny", "mof-tiny-p8", "mof-small")
    assert list_models()[:4] == list(TINY_ARCHS) and "ViT-B-32" in list_models()
    p8 = open_clip.get_model_config("mof-tiny-p8")
    assert p8["vision_cfg"]["image_size"] // p8["vision_cfg"]["patch_size"] == 8  # 64 tokens
    assert {k: v for k, v in p8["vision_cfg"].items() if k != "patch_size"} == \
        {k: v for k, v in open_clip.get_model_config("mof-tiny")["vision_cfg"].items() if k != "patch_size"}
    tiny = open_clip.get_model_config("mof-tiny")
    assert tiny["vision_cfg"]["image_size"] // tiny["vision_cfg"]["patch_size"] == 4  # 16 tokens
    assert tiny["embed_dim"] == tiny["vision_cfg"]["width"] == tiny["text_cfg"]["width"] == 128
    t32 = open_clip.get_model_config("mof-tiny-32")["vision_cfg"]
    assert t32["image_size"] == 32 and t32["image_size"] // t32["patch_size"] == 4


def test_profiles_build_their_models():
    smoke = create_from_config(get_config("smoke").model)
    model = get_config("cpu").model
    assert model.pretrained == "stills"  # the towers of `mofkit pretrain`, which a training run resolves
    with pytest.raises(ValueError, match="mofkit pretrain"):
        create_from_config(model)
    cpu = create_from_config(dataclasses.replace(model, pretrained=None))
    assert (smoke.arch, smoke.image_size) == ("mof-tiny-32", get_config("smoke").data.decode_size)
    assert (cpu.arch, cpu.image_size) == ("mof-tiny-p8", get_config("cpu").data.decode_size)
    assert cpu.tokenizer(["a caption"]).shape == (1, get_config("cpu").model.context_length)


def test_unknown_arch_tag_and_head_list_alternatives():
    with pytest.raises(ValueError, match="tags are .*openai"):
        create_retrieval_model("ViT-B-32", "no-such-tag")
    with pytest.raises(ValueError, match="unknown architecture .*mof-tiny"):
        create_retrieval_model("ViT-Q-99")
    with pytest.raises(ValueError, match="choose one of"):
        create_retrieval_model("mof-tiny-32", temporal_head="maxP")


# -- the model's interface ---------------------------------------------------------------------

def test_bundle_shapes_and_normalised_outputs(tiny):
    m = tiny.model
    assert (tiny.image_size, len(tiny.mean), len(tiny.std)) == (32, 3, 3)
    tokens = tiny.tokenizer(["a red circle moves left", "a blue square pulses"])
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    frames = torch.randn(2, 4, 3, 32, 32)
    text, video, scale = m(tokens, frames)
    assert text.shape == video.shape == (2, m.embed_dim) == (2, 64)
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(2))
    assert scale.shape == () and 0 < scale.item() <= 100.0
    per_frame = m.encode_frames(frames)
    assert per_frame.shape == (2, 4, 64)
    # frame i of video b is the image tower on that one picture
    torch.testing.assert_close(per_frame[1, 2], m.clip.encode_image(frames[1, 2:3])[0], rtol=1e-4, atol=1e-5)


def test_wrong_input_shapes_say_what_is_expected(tiny):
    with pytest.raises(ValueError, match=r"\(B, 32\).*context_length=32"):
        tiny.model.encode_text(torch.zeros(1, 77, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, T, 3, S, S\)"):
        tiny.model.encode_video(torch.zeros(2, 3, 32, 32))


@pytest.mark.parametrize("length", [32, 64])
def test_context_length_sets_positions_mask_and_tokenizer(length):
    b = create_retrieval_model("mof-tiny-32", context_length=length)
    clip = b.model.clip
    assert clip.positional_embedding.shape[0] == length and clip.attn_mask.shape == (length, length)
    tokens = b.tokenizer(["word " * 100, "a short one"])
    assert tokens.shape == (2, length) and tokens[0, -1] == EOT  # truncated captions keep their end
    assert b.model.encode_text(tokens).shape == (2, 64)


def test_short_context_model_equals_the_77_position_model_on_short_captions(clip77):
    # Truncating the positional embedding (CLIP4Clip) is exact for captions that fit: the causal
    # mask hides the padding after the end token from it. Interpolating positions would not be.
    clip, path = clip77
    b = create_retrieval_model("mof-tiny-32", str(path), context_length=32)
    captions = ["a red circle moves to the left", "two squares swap places quickly"]
    t77 = open_clip.get_tokenizer("mof-tiny-32", context_length=77)(captions)
    with torch.no_grad():
        ref = F.normalize(clip.encode_text(t77), dim=-1)
        torch.testing.assert_close(b.model.encode_text(b.tokenizer(captions)), ref, rtol=1e-5, atol=1e-6)


# -- loading weights ---------------------------------------------------------------------------

def test_load_wrapped_open_clip_state_dict_truncates_positions(clip77, tmp_path):
    clip, _ = clip77
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}, "epoch": 3}, path)
    b = create_retrieval_model("mof-tiny-32", str(path), context_length=32)
    got = b.model.clip.state_dict()
    for k, v in clip.state_dict().items():
        want = v[:32] if k == "positional_embedding" else v
        assert torch.equal(got[k], want), k
    assert b.pretrained == str(path)


def test_load_safetensors_and_torchscript_files(clip77, tmp_path):
    from safetensors.torch import save_file

    clip, _ = clip77
    st = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(st))
    renamed = tmp_path / "weights.data"  # recognised by content, not by name
    renamed.write_bytes(st.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        traced = torch.jit.trace(clip, (torch.zeros(1, 3, 32, 32), torch.zeros(1, 77, dtype=torch.long)),
                                 check_trace=False)
    jit = tmp_path / "ViT-tiny.pt"  # OpenAI's original files are TorchScript archives
    traced.save(str(jit))
    for path in (st, renamed, jit):
        b = create_retrieval_model("mof-tiny-32", str(path), context_length=32)
        assert torch.equal(b.model.clip.visual.conv1.weight, clip.visual.conv1.weight), path
        assert torch.equal(b.model.clip.positional_embedding, clip.positional_embedding[:32]), path


def test_load_mofkit_checkpoint_into_the_whole_model(tmp_path):
    torch.manual_seed(2)
    src = create_retrieval_model("mof-tiny-32", temporal_head="seqTransf", context_length=64).model
    with torch.no_grad():
        src.clip.logit_scale.fill_(3.0)
        src.temporal.position.add_(1.0)
    path = tmp_path / "ckpt.pt"
    cfg = {"model": {"arch": "mof-tiny-32", "temporal_head": "seqTransf", "context_length": 64}}
    torch.save({"model": src.state_dict(), "config": cfg, "epoch": 0,
                "rng": {"numpy": __import__("numpy").random.get_state()}}, path)
    same = create_retrieval_model("mof-tiny-32", str(path), temporal_head="seqTransf", context_length=64)
    _same_state(same.model, src)
    shorter = create_retrieval_model("mof-tiny-32", str(path), temporal_head="seqTransf", context_length=32)
    torch.testing.assert_close(shorter.model.clip.positional_embedding, src.clip.positional_embedding[:32])
    with pytest.raises(ValueError, match="arch='mof-tiny-32'"):
        create_retrieval_model("mof-tiny", str(path), temporal_head="seqTransf")
    # another head: the towers load, the head starts fresh (with a warning that says so)
    with pytest.warns(UserWarning, match="towers only"):
        other = create_retrieval_model("mof-tiny-32", str(path))
    torch.testing.assert_close(other.model.clip.visual.conv1.weight, src.clip.visual.conv1.weight)
    assert not any(True for _ in other.model.temporal.parameters())  # meanP has none
    with pytest.raises(ValueError, match="64 text positions .*context_length <= 64"):
        create_retrieval_model("mof-tiny-32", str(path), temporal_head="seqTransf", context_length=77)


def test_bad_weights_files_are_named(tmp_path):
    other = tmp_path / "other.bin"
    torch.save({"visual.nothing": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="other.bin do not fit .*model.arch"):
        create_retrieval_model("mof-tiny-32", str(other))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a weights file" * 10)
    with pytest.raises(ValueError, match="cannot read weights file .*garbage.pt"):
        create_retrieval_model("mof-tiny-32", str(garbage))
    with pytest.raises(FileNotFoundError, match="missing.pt.*does not exist"):
        create_retrieval_model("mof-tiny-32", str(tmp_path / "missing.pt"))


# -- pretrained tags without network -----------------------------------------------------------

def test_pretrained_tag_offline_fails_fast_with_advice(offline, tmp_path):
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ViT-B-32-quickgelu + openai agree: no warning either
        with pytest.raises(PretrainedUnavailableError) as err:
            create_retrieval_model("ViT-B-32-quickgelu", "openai", cache_dir=str(tmp_path))
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "not in the local cache" in msg and "HF_HUB_OFFLINE" in msg
    assert "timm/vit_base_patch32_clip_224.openai" in msg and "open_clip_model.safetensors" in msg
    assert "pretrained='/path/to/open_clip_model.safetensors'" in msg and "model.pretrained" in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__ is False


def test_no_network_without_offline_flag_fails_fast(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(factory, "_hf_offline", lambda: False)
    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(PretrainedUnavailableError, match="no network connection"):
        resolve_pretrained("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path))

    def stall(*args, **kwargs):
        time.sleep(5)

    monkeypatch.setattr(socket, "create_connection", stall)
    t0 = time.monotonic()
    reason = factory._unreachable_reason(open_clip.get_pretrained_cfg("ViT-B-32", "openai"), timeout=0.2)
    assert reason and "no answer" in reason and time.monotonic() - t0 < 2


def test_cached_tag_resolves_to_the_cached_file_without_network(offline, tmp_path):
    # the Hugging Face cache layout: models--org--name/{refs/main, snapshots/<rev>/<file>}
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    got = resolve_pretrained("ViT-B-32-quickgelu", "openai", cache_dir=str(tmp_path))
    assert got == str(snap / "open_clip_pytorch_model.bin")


def test_tag_path_end_to_end_with_a_registered_local_tag(clip77, monkeypatch):
    # A tag whose weights are already on disk goes the same way as a cached download: the tag's
    # normalisation wins, the QuickGELU check runs, positions are truncated.
    from open_clip import pretrained as oc_pretrained

    _, path = clip77
    tag = {"file": str(path), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "quick_gelu": True}
    monkeypatch.setitem(oc_pretrained._PRETRAINED, "mof-tiny-32", {"local": tag})
    with pytest.warns(UserWarning, match="quick_gelu=True .*-quickgelu variant"):
        b = create_retrieval_model("mof-tiny-32", "local", context_length=32)
    assert b.mean == b.std == (0.5, 0.5, 0.5) and b.pretrained == "local"
    assert torch.equal(b.model.clip.positional_embedding, clip77[0].positional_embedding[:32])


def test_failed_download_gets_the_same_advice_without_library_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr(factory, "_unreachable_reason", lambda cfg, timeout=3.0: None)

    def fail(*args, **kwargs):
        raise FileNotFoundError("Failed to download file (open_clip_pytorch_model.bin)\nlong trace")

    monkeypatch.setattr(open_clip, "download_pretrained", fail)
    with pytest.raises(PretrainedUnavailableError,
                       match="download failed .*open_clip_pytorch_model.bin") as err:
        resolve_pretrained("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path))
    assert "long trace" not in str(err.value) and err.value.__suppress_context__
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in str(err.value)


def test_quickgelu_mismatch_is_detected_and_surfaced(offline, tmp_path):
    msg = quickgelu_mismatch("ViT-B-32", "openai")
    assert msg and "quick_gelu=True" in msg and "use arch 'ViT-B-32-quickgelu'" in msg
    assert quickgelu_mismatch("ViT-B-32-quickgelu", "openai") is None
    assert quickgelu_mismatch("ViT-B-32", "laion2b_s34b_b79k") is None  # trained with GELU
    assert quickgelu_mismatch("ViT-B-32", "/some/file.bin") is None
    with pytest.warns(UserWarning, match="use arch 'ViT-B-32-quickgelu'"):
        with pytest.raises(PretrainedUnavailableError):
            create_retrieval_model("ViT-B-32", "openai", cache_dir=str(tmp_path))


# -- temporal heads ----------------------------------------------------------------------------

MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]).bool()


def _perturbed_seq(dim=16, layers=2, max_frames=8, seed=0):
    torch.manual_seed(seed)
    head = SeqTransformer(dim, layers=layers, max_frames=max_frames)
    with torch.no_grad():  # leave the identity start, as training does
        for p in head.blocks.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return head


@pytest.mark.parametrize("make", [MeanPool, _perturbed_seq], ids=["meanP", "seqTransf"])
def test_temporal_heads_ignore_padded_frames(make):
    head = make()
    torch.manual_seed(0)
    x = torch.randn(3, 6, 16)
    ref = head(x, MASK)
    for fill in (float("nan"), float("inf"), 1e4):
        garbage = x.clone()
        garbage[~MASK] = fill
        torch.testing.assert_close(head(garbage, MASK), ref)
    # a padded video pools exactly as that video alone, unpadded
    torch.testing.assert_close(head(x[1:2, :3]), ref[1:2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head(x[2:3, :1]), ref[2:3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [MeanPool, _perturbed_seq], ids=["meanP", "seqTransf"])
def test_a_video_without_real_frames_gives_zeros_not_nan(make):
    out = make()(torch.randn(2, 4, 16), torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]).bool())
    assert torch.isfinite(out).all() and out[1].abs().max() == 0


def test_meanp_is_the_plain_mean_of_normalised_frames_and_order_free():
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(MeanPool()(x), F.normalize(x, dim=-1).mean(1))
    torch.testing.assert_close(MeanPool()(x, torch.ones(2, 5, dtype=torch.bool)), MeanPool()(x))
    torch.testing.assert_close(MeanPool()(x[:, [4, 2, 0, 1, 3]]), MeanPool()(x))


def test_seqtransf_starts_next_to_meanp_and_sees_order():
    torch.manual_seed(0)
    x = 10 * F.normalize(torch.randn(4, 8, 64), dim=-1)  # frame embeddings have norms ~10
    fresh = SeqTransformer(64, layers=2, max_frames=16)
    cos = F.cosine_similarity(fresh(x), MeanPool()(x), dim=-1)
    assert cos.min() > 0.999
    head = _perturbed_seq(64, max_frames=16)
    perm = [7, 3, 0, 5, 1, 6, 2, 4]
    assert not torch.allclose(head(x[:, perm]), head(x), atol=1e-3)


def test_seqtransf_gradients_reach_frames_positions_and_blocks():
    head = _perturbed_seq()
    x = torch.randn(3, 6, 16, requires_grad=True)
    head(x, MASK).pow(2).sum().backward()
    assert x.grad[MASK].abs().sum() > 0 and x.grad[~MASK].abs().max() == 0
    assert head.position.grad[:6].abs().sum() > 0 and head.position.grad[6:].abs().max() == 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.blocks.parameters())


def test_temporal_head_argument_errors():
    head = SeqTransformer(16, layers=1, max_frames=4)
    with pytest.raises(ValueError, match="max_frames=4"):
        head(torch.randn(1, 5, 16))
    with pytest.raises(ValueError, match="bool tensor"):
        head(torch.randn(1, 3, 16), torch.ones(1, 3))
    with pytest.raises(ValueError, match="not divisible"):
        SeqTransformer(16, heads=3)
    assert isinstance(create_temporal_head("seqTransf", 128, layers=1, max_frames=12), SeqTransformer)


# -- temperature -------------------------------------------------------------------------------

def test_learned_logit_scale_is_clamped_at_100(tiny):
    m = tiny.model
    saved = m.clip.logit_scale.detach().clone()
    try:
        with torch.no_grad():
            m.clip.logit_scale.fill_(math.log(1 / 0.07))
            assert math.isclose(float(m.logit_scale()), 1 / 0.07, rel_tol=1e-5)
            m.clip.logit_scale.fill_(math.log(1000.0))
            assert float(m.logit_scale()) == 100.0
    finally:
        with torch.no_grad():
            m.clip.logit_scale.copy_(saved)


def test_fixed_temperature_is_exact_frozen_and_survives_loading(clip77):
    _, path = clip77
    b = create_retrieval_model("mof-tiny-32", str(path), fixed_temperature=0.05)
    assert float(b.model.logit_scale()) == pytest.approx(20.0, rel=1e-6)
    assert not b.model.clip.logit_scale.requires_grad
    assert math.isclose(float(b.model.clip.logit_scale.exp()), 20.0, rel_tol=1e-5)
    grouped = {id(p) for g in param_groups(b.model, lr=1.0) for p in g["params"]}
    assert id(b.model.clip.logit_scale) not in grouped
    cold = create_retrieval_model("mof-tiny-32", fixed_temperature=0.005)
    assert float(cold.model.logit_scale()) == pytest.approx(200.0)  # a fixed scale is not clamped
    with pytest.raises(ValueError, match="fixed_temperature must be > 0"):
        create_retrieval_model("mof-tiny-32", fixed_temperature=0.0)


# -- what MOF's meta step needs ----------------------------------------------------------------

@pytest.mark.parametrize("head", ["meanP", "seqTransf"])
def test_functional_call_and_double_backward_under_math_attention(head):
    torch.manual_seed(0)
    b = create_retrieval_model("mof-tiny-32", temporal_head=head, temporal_layers=1)
    m = b.model.eval()
    tokens = b.tokenizer(["a red circle", "a blue square", "a green dot"])
    x = torch.randn(3, 2, 3, 32, 32, requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]]).bool()
    params = {n: p for n, p in m.named_parameters() if p.requires_grad}
    buffers = dict(m.named_buffers())
    with sdpa_kernel(SDPBackend.MATH):
        out = functional_call(m, {**params, **buffers}, (tokens, x, mask))
        torch.testing.assert_close(out[0], m(tokens, x, mask)[0])
        loss = contrastive_loss(*out)
        g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        # one virtual step w' = w - a g, then a loss at w' differentiated back to the frames
        virtual = {n: p - 0.1 * gi for (n, p), gi in zip(params.items(), g)}
        loss2 = contrastive_loss(*functional_call(m, {**virtual, **buffers}, (tokens, x.detach(), mask)))
        (gx,) = torch.autograd.grad(loss2, [x])
    assert torch.isfinite(gx).all() and gx[mask].abs().sum() > 0
    assert gx[~mask].abs().max() == 0  # a padded frame influences nothing
    # the virtual weights were really used
    assert not torch.allclose(loss2, loss)


def test_param_groups_split_towers_and_decay():
    b = create_retrieval_model("mof-tiny-32", temporal_head="seqTransf", temporal_layers=1)
    m = b.model
    groups = param_groups(m, 1e-3, 1e-6, 0.2)
    by = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["tower", "tower_no_decay", "new", "new_no_decay"]
    assert (by["tower"]["lr"], by["tower"]["weight_decay"]) == (1e-6, 0.2)
    assert (by["tower_no_decay"]["lr"], by["tower_no_decay"]["weight_decay"]) == (1e-6, 0.0)
    assert (by["new"]["lr"], by["new"]["weight_decay"]) == (1e-3, 0.2)
    assert (by["new_no_decay"]["lr"], by["new_no_decay"]["weight_decay"]) == (1e-3, 0.0)
    ids = lambda name: {id(p) for p in by[name]["params"]}  # noqa: E731
    assert id(m.clip.visual.conv1.weight) in ids("tower")
    for p in (m.clip.token_embedding.weight, m.clip.positional_embedding, m.clip.visual.class_embedding,
              m.clip.visual.positional_embedding, m.clip.ln_final.weight, m.clip.ln_final.bias):
        assert id(p) in ids("tower_no_decay")
    assert id(m.clip.logit_scale) in ids("new_no_decay") and id(m.temporal.position) in ids("new_no_decay")
    assert id(m.temporal.blocks.layers[0].linear1.weight) in ids("new")
    assert all(p.ndim >= 2 for g in ("tower", "new") for p in by[g]["params"])
    everything = [id(p) for g in groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in m.parameters() if p.requires_grad)
    same_lr = param_groups(m, lr=1e-3)
    assert {g["lr"] for g in same_lr} == {1e-3} and {g["weight_decay"] for g in same_lr} == {0.0}
