"""Model factory, temporal heads, loss and the properties MOF's meta step relies on."""
import math
import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mofkit.bilevel.meta import math_attention
from mofkit.models import (MeanPool, PretrainedUnavailableError, SeqTransformer, TINY_ARCHS,
                           contrastive_loss, create_retrieval_model, list_models, param_groups,
                           quickgelu_mismatch)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create_retrieval_model("mof-tiny-32", context_length=32)


def test_tiny_archs_are_registered_with_open_clip():
    import open_clip

    assert {"mof-tiny", "mof-tiny-32"} <= set(TINY_ARCHS)
    assert list_models()[:len(TINY_ARCHS)] == list(TINY_ARCHS)
    assert "ViT-B-32" in list_models()
    assert open_clip.get_model_config("mof-tiny")["vision_cfg"]["image_size"] == 64


def test_bundle_shapes_and_normalised_outputs(tiny):
    m = tiny.model
    tokens = tiny.tokenizer(["a red circle moves left", "a blue square pulses"])
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    frames = torch.randn(2, 4, 3, tiny.image_size, tiny.image_size)
    text, video, scale = m(tokens, frames)
    assert text.shape == video.shape == (2, m.clip.text_projection.shape[1])
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(video.norm(dim=-1), torch.ones(2))
    assert 0 < float(scale) <= 100.0
    assert m.encode_frames(frames).shape == (2, 4, text.shape[1])


@pytest.mark.parametrize("length", [32, 64])
def test_context_length_is_configurable(length):
    b = create_retrieval_model("mof-tiny-32", context_length=length)
    assert b.model.clip.positional_embedding.shape[0] == length
    tokens = b.tokenizer(["word " * 100])
    assert tokens.shape == (1, length)
    assert b.model.encode_text(tokens).shape[0] == 1


def test_load_open_clip_state_dict_with_longer_context(tmp_path):
    import open_clip

    clip = open_clip.create_model("mof-tiny-32")  # context 77, as OpenAI checkpoints have
    path = tmp_path / "weights.bin"
    torch.save({"state_dict": {f"module.{k}": v for k, v in clip.state_dict().items()}}, path)
    b = create_retrieval_model("mof-tiny-32", str(path), context_length=32)
    torch.testing.assert_close(b.model.clip.visual.conv1.weight, clip.visual.conv1.weight)
    torch.testing.assert_close(b.model.clip.positional_embedding, clip.positional_embedding[:32])


def test_load_mofkit_checkpoint(tmp_path, tiny):
    with torch.no_grad():
        tiny.model.clip.logit_scale.fill_(3.0)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": tiny.model.state_dict(), "config": {"model": {"arch": "mof-tiny-32"}},
                "epoch": 0}, path)
    b = create_retrieval_model("mof-tiny-32", str(path))
    for (k, v), (k2, v2) in zip(tiny.model.state_dict().items(), b.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    with pytest.raises(ValueError, match="holds a 'mof-tiny-32' model"):
        create_retrieval_model("mof-tiny", str(path))


def test_wrong_weights_file_is_named(tmp_path):
    path = tmp_path / "other.bin"
    torch.save({"visual.nothing": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit this architecture"):
        create_retrieval_model("mof-tiny-32", str(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_retrieval_model("mof-tiny-32", str(tmp_path / "missing.pt"))


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True, raising=False)


def test_pretrained_tag_offline_fails_fast_with_advice(offline, tmp_path):
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PretrainedUnavailableError) as err:
            create_retrieval_model("ViT-B-32-quickgelu", "openai", cache_dir=str(tmp_path))
    assert time.time() - t0 < 10
    msg = str(err.value)
    assert "no network" in msg and "pretrained='/path/to/weights.bin'" in msg


def test_unknown_tag_and_arch_list_alternatives():
    with pytest.raises(ValueError, match="tags are"):
        create_retrieval_model("ViT-B-32", "no-such-tag")
    with pytest.raises(ValueError, match="unknown architecture"):
        create_retrieval_model("ViT-Q-99")


def test_quickgelu_mismatch_is_surfaced(offline, tmp_path):
    msg = quickgelu_mismatch("ViT-B-32", "openai")
    assert msg and "ViT-B-32-quickgelu" in msg
    assert quickgelu_mismatch("ViT-B-32-quickgelu", "openai") is None
    with pytest.warns(UserWarning, match="use arch 'ViT-B-32-quickgelu'"):
        with pytest.raises(PretrainedUnavailableError):
            create_retrieval_model("ViT-B-32", "openai", cache_dir=str(tmp_path))


@pytest.mark.parametrize("head", [MeanPool(), SeqTransformer(16, layers=2, max_frames=8)])
def test_temporal_heads_ignore_padded_frames(head):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]]).bool()
    ref = head(x, mask)
    garbage = x.clone()
    garbage[~mask] = float("nan")
    torch.testing.assert_close(head(garbage, mask), ref)
    # the masked output of a video equals that video alone, unpadded
    torch.testing.assert_close(head(x[1:2, :3]), ref[1:2], rtol=1e-5, atol=1e-6)


def test_meanp_is_mean_of_normalised_frames_and_order_free():
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(MeanPool()(x), F.normalize(x, dim=-1).mean(1))
    torch.testing.assert_close(MeanPool()(x[:, [4, 2, 0, 1, 3]]), MeanPool()(x))


def test_seqtransf_sees_order_and_trains():
    torch.manual_seed(0)
    head = SeqTransformer(16, layers=1, max_frames=8)
    with torch.no_grad():
        for p in head.blocks.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 5, 16, requires_grad=True)
    out = head(x)
    assert not torch.allclose(head(x[:, [4, 2, 0, 1, 3]]), out)
    out.sum().backward()
    assert x.grad.abs().sum() > 0 and head.position.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="max_frames"):
        head(torch.randn(1, 9, 16))


def test_contrastive_loss_matches_naive_loop():
    torch.manual_seed(0)
    t, v = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    s = torch.tensor(10.0)
    naive = 0.0
    for i in range(5):
        row = torch.stack([s * t[i] @ v[j] for j in range(5)])
        col = torch.stack([s * t[j] @ v[i] for j in range(5)])
        naive += -torch.log_softmax(row, 0)[i] - torch.log_softmax(col, 0)[i]
    torch.testing.assert_close(contrastive_loss(t, v, s), naive / 10)


def test_fixed_temperature(tiny):
    b = create_retrieval_model("mof-tiny-32", fixed_temperature=0.05)
    assert math.isclose(float(b.model.logit_scale()), 20.0, rel_tol=1e-5)
    assert not b.model.clip.logit_scale.requires_grad


def test_functional_call_and_double_backward_through_the_model(tiny):
    m = tiny.model.eval()
    tokens = tiny.tokenizer(["a red circle", "a blue square"])
    x = torch.randn(2, 2, 3, tiny.image_size, tiny.image_size, requires_grad=True)
    params = {n: p for n, p in m.named_parameters() if p.requires_grad}
    with math_attention():
        loss = contrastive_loss(*functional_call(m, params, (tokens, x)))
        g = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        (gx,) = torch.autograd.grad(sum((gi ** 2).sum() for gi in g), [x])
    assert torch.isfinite(gx).all() and gx.abs().sum() > 0


def test_param_groups_split_towers_and_decay(tiny):
    groups = param_groups(tiny.model, lr=1e-3, tower_lr=1e-6, weight_decay=0.2)
    by_name = {g["name"]: g for g in groups}
    assert by_name["tower"]["lr"] == 1e-6 and by_name["tower"]["weight_decay"] == 0.2
    assert by_name["new_no_decay"]["lr"] == 1e-3  # logit scale
    no_decay_ids = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(tiny.model.clip.token_embedding.weight) in no_decay_ids
    assert id(tiny.model.clip.logit_scale) in no_decay_ids
    n = sum(len(g["params"]) for g in groups)
    assert n == sum(1 for p in tiny.model.parameters() if p.requires_grad)
