"""``mofkit pretrain``: the image and text towers trained CLIP-style on synthetic stills.

MOF and CLIP4Clip fine-tune CLIP; the kit's video profiles train from scratch. This stage gives
them the real regime offline: the towers of ``model.arch`` are trained on the image-caption corpus
of :mod:`mofkit.data.stills` (one object, one action, one caption per still) with CLIP's
symmetric contrastive loss, and saved as an open_clip state dict that any video run loads through
``model.pretrained`` (towers only: the temporal head starts fresh, as on CLIP). Fine-tuning then
uses CLIP4Clip-like learning rates: the new modules faster than the towers (``train.lr``,
``train.tower_lr``; the regime study's ``study.finetune_lr`` and ``study.finetune_tower_lr``).

Many stills show the same class (240 of them) and so carry the same meaning under different
words; a batch's other stills of a caption's class are not its negatives: the targets of the
contrastive loss spread evenly over the stills of the same class (CLIP's loss when every class is
unique). A small tower trained on that loss alone learns colour and little else: 8 colours
tell most stills of a batch apart, so shape is never asked for. Linear colour, shape and action
heads on the image embedding (``pretrain.attribute_weight``, dropped after pretraining) ask for
all three, and the patch-8 tower (``mof-tiny-p8``: 64 tokens at 64 px where ``mof-tiny`` has 16)
has the resolution to see shape. Each epoch ends with zero-shot accuracies on the held-out stills
(each still's nearest of the 240 class prompts: is it the class, and does it name the still's
colour, shape, action?); ``mofkit pretrain`` prints them and fails below ``pretrain.gate``.

Training resumes from the last finished epoch. The result is
``<pretrain.dir>/<arch>-<digest>/towers.pt`` (:func:`pretrain_dir`: one folder per settings) with
``pretrain.json`` beside it (settings, per-epoch loss and zero-shot accuracies, seconds). A run
with ``model.pretrained="stills"`` (the ``cpu`` profile's default) starts from it, and pretrains
first where it does not exist yet (:func:`resolve_model_config`).

    python -m mofkit pretrain --profile cpu
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mofkit.config import Config
from mofkit.models.factory import STILLS_TAG as PRETRAINED_TAG  # model.pretrained naming these towers
from mofkit.train.checkpoint import atomic_torch_save, atomic_write_text

TOWERS_FILE = "towers.pt"
ATTRIBUTES = ("colour", "shape", "action")


def _identity(cfg: Config) -> dict:
    from mofkit.data.stills import FORMAT_VERSION

    p = {k: v for k, v in dataclasses.asdict(cfg.pretrain).items() if k not in ("dir", "gate")}
    return json.loads(json.dumps({"pretrain": p, "stills": FORMAT_VERSION,
                                  "arch": cfg.model.arch, "context_length": cfg.model.context_length,
                                  "crop_scale": cfg.data.crop_scale}))


def pretrain_dir(cfg: Config) -> Path:
    """The folder of this config's pretraining: ``<pretrain.dir>/<arch>-<digest of its settings>``,
    so that every run, notebook and study of the same settings shares one pretraining."""
    digest = hashlib.sha1(json.dumps(_identity(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return Path(cfg.pretrain.dir) / f"{cfg.model.arch}-{digest}"


def pretrain_checkpoint(cfg: Config) -> Path:
    """Where ``mofkit pretrain`` writes (and ``model.pretrained="stills"`` runs read) the towers."""
    return pretrain_dir(cfg) / TOWERS_FILE


def pretrained_done(cfg: Config) -> dict | None:
    """The finished pretraining's ``pretrain.json`` if this config's pretraining has finished."""
    meta = pretrain_dir(cfg) / "pretrain.json"
    if not meta.is_file() or not pretrain_checkpoint(cfg).is_file():
        return None
    doc = json.loads(meta.read_text())
    return doc if doc.get("settings") == _identity(cfg) else None


def pretrain_history(cfg: Config):
    """Per-epoch loss and zero-shot accuracies (%) of this config's finished pretraining, as a
    DataFrame (``epoch``, ``loss``, ``class``, ``colour``, ``shape``, ``action``, ``seconds``); its
    ``attrs["gate"]`` says whether the last epoch passed ``pretrain.gate``. None when the config
    starts from no pretraining of this stage or it has not finished."""
    import pandas as pd

    if cfg.model.pretrained != PRETRAINED_TAG:
        return None
    doc = pretrained_done(cfg)
    if doc is None:
        return None
    df = pd.DataFrame(doc["history"]).rename(columns={"zero_shot_acc": "class",
                                                      **{f"{a}_acc": a for a in ATTRIBUTES}})
    df.attrs["gate"] = {"threshold": cfg.pretrain.gate,
                        "failed": gate_failures(df.iloc[-1].to_dict(), cfg.pretrain.gate)}
    return df


def resolve_model_config(cfg: Config, *, progress: bool = True):
    """``cfg.model`` with ``pretrained="stills"`` replaced by this config's towers file, pretraining
    them first where they do not exist yet (the main job's first run does it once); any other
    ``pretrained`` is returned as it is."""
    if cfg.model.pretrained != PRETRAINED_TAG:
        return cfg.model
    return dataclasses.replace(cfg.model, pretrained=str(run_pretrain(cfg, progress=progress)))


def attribute_labels(labels: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Colour, shape and action indices (into ``COLOURS``, ``SHAPES``, ``ACTIONS``) of class indices."""
    from mofkit.data.stills import classes
    from mofkit.data.synthetic import ACTIONS, COLOURS, SHAPES

    table = classes()
    index = {"colour": list(COLOURS), "shape": list(SHAPES), "action": list(ACTIONS)}
    labels = np.asarray(labels)
    return {a: np.array([index[a].index(table[int(c)][a]) for c in labels], np.int64) for a in ATTRIBUTES}


class AttributeHeads(torch.nn.Module):
    """Linear colour / shape / action classifiers on the image embedding (pretraining only).

    CLIP's contrastive loss alone lets a small tower match captions by their easiest attribute:
    with 8 colours, colour tells most stills of a batch apart, and shape is never asked for. A
    direct classification loss per attribute makes the tower see every one of them.
    """

    def __init__(self, dim: int):
        super().__init__()
        from mofkit.data.synthetic import ACTIONS, COLOURS, SHAPES

        sizes = {"colour": len(COLOURS), "shape": len(SHAPES), "action": len(ACTIONS)}
        self.heads = torch.nn.ModuleDict({a: torch.nn.Linear(dim, sizes[a]) for a in ATTRIBUTES})

    def loss(self, image: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of the three heads on unnormalised image embeddings (B, D)."""
        return sum(F.cross_entropy(self.heads[a](image), targets[a]) for a in ATTRIBUTES) / len(ATTRIBUTES)


def _soft_targets(labels: torch.Tensor) -> torch.Tensor:
    """(B, B) rows spread evenly over the batch's stills of the row's class."""
    same = (labels[:, None] == labels[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def contrastive_soft_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                          labels: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss with same-class stills as positives (:func:`_soft_targets`)."""
    logits = scale * text @ image.t()  # (B texts, B images)
    targets = _soft_targets(labels)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


@torch.no_grad()
def zero_shot_accuracy(model, preprocess, tokenizer, images: np.ndarray, labels: np.ndarray,
                       device: torch.device, batch: int = 256) -> dict[str, float]:
    """Zero-shot accuracies (%) on stills: each still's nearest of the 240 class prompts.

    Returns:
        ``{"class": ..., "colour": ..., "shape": ..., "action": ...}``: the share of stills whose
        nearest prompt is their class, and whose nearest prompt names their colour, shape, action.
    """
    from mofkit.data.stills import class_prompts

    model.eval()
    text = model.encode_text(tokenizer(class_prompts()).to(device))  # (C, D)
    pred = []
    for i in range(0, len(images), batch):
        x = preprocess.eval(torch.from_numpy(np.array(images[i:i + batch])).to(device))
        emb = F.normalize(model.clip.encode_image(x), dim=-1)  # (b, D)
        pred.append((emb @ text.t()).argmax(1).cpu().numpy())
    pred = np.concatenate(pred) if pred else np.zeros(0, np.int64)
    n = max(1, len(images))
    out = {"class": 100.0 * float((pred == labels).sum()) / n}
    truth, guess = attribute_labels(labels), attribute_labels(pred)
    out.update({a: 100.0 * float((truth[a] == guess[a]).sum()) / n for a in ATTRIBUTES})
    return out


def gate_failures(accuracy: dict[str, float], gate: float) -> list[str]:
    """The attributes whose zero-shot accuracy is under ``gate`` percent."""
    return [a for a in ATTRIBUTES if accuracy[a] < gate]


def run_pretrain(cfg: Config, *, progress: bool = True) -> Path:
    """Pretrain ``cfg.model.arch``'s towers on the stills (or reuse a finished pretraining with the
    same settings, :func:`pretrain_dir`); returns the towers file for ``model.pretrained``."""
    from tqdm.auto import tqdm

    from mofkit.data.preprocess import Preprocessor
    from mofkit.data.stills import ensure_stills, load_stills
    from mofkit.device import get_device
    from mofkit.models import create_from_config, param_groups
    from mofkit.train.schedule import warmup_cosine

    p = cfg.pretrain
    folder = pretrain_dir(cfg)
    target = pretrain_checkpoint(cfg)
    if pretrained_done(cfg) is not None:
        return target
    ensure_stills(p.root, p, progress=progress)
    stills = load_stills(p.root)
    device = get_device(cfg.device)
    torch.manual_seed(p.seed)
    bundle = create_from_config(dataclasses.replace(cfg.model, pretrained=None), device)
    model = bundle.model
    preprocess = Preprocessor(bundle.image_size, bundle.mean, bundle.std)
    train_sl, test_sl = stills.split("train"), stills.split("test")
    tokens = bundle.tokenizer(stills.captions[train_sl])  # (N, L)
    labels = torch.from_numpy(stills.labels[train_sl])
    heads = AttributeHeads(model.embed_dim).to(device)
    attributes = {a: torch.from_numpy(v) for a, v in attribute_labels(stills.labels[train_sl]).items()}
    groups = param_groups(model, lr=p.lr, weight_decay=p.weight_decay)
    groups.append({"params": list(heads.parameters()), "lr": p.lr, "weight_decay": 0.0, "name": "heads"})
    opt = torch.optim.AdamW(groups, lr=p.lr)
    n = len(tokens)
    steps = max(1, n // p.batch_size)
    total, warmup = steps * p.epochs, max(1, steps // 2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, warmup))
    state_path = folder / "state.pt"
    history, start, seconds = [], 0, 0.0
    if state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        if st.get("settings") == _identity(cfg):
            model.load_state_dict(st["model"])
            heads.load_state_dict(st["heads"])
            opt.load_state_dict(st["optim"])
            sched.load_state_dict(st["sched"])
            history, start, seconds = st["history"], st["epoch"] + 1, st["seconds"]
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in range(start, p.epochs):
        t0 = time.time()
        model.train()
        order = np.random.default_rng([p.seed, epoch]).permutation(n)
        crop_rng = np.random.default_rng([p.seed, epoch, 1])
        losses = []
        for b in tqdm(range(steps), desc=f"pretrain {epoch + 1}/{p.epochs}", disable=not progress,
                      leave=False, mininterval=1.0):
            idx = np.sort(order[b * p.batch_size:(b + 1) * p.batch_size])
            x = torch.from_numpy(np.array(stills.images[idx])).to(device)  # (B, S, S, 3)
            x = preprocess.train(x, crop_rng, scale=tuple(cfg.data.crop_scale))  # (B, 3, S, S)
            raw = model.clip.encode_image(x)  # (B, D) before normalisation
            text = model.encode_text(tokens[idx].to(device))
            loss = contrastive_soft_loss(F.normalize(raw, dim=-1), text, model.logit_scale(),
                                         labels[idx].to(device))
            if p.attribute_weight > 0:
                loss = loss + p.attribute_weight * heads.loss(
                    raw, {a: v[idx].to(device) for a, v in attributes.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        seconds += time.time() - t0
        acc = zero_shot_accuracy(model, preprocess, bundle.tokenizer, stills.images[test_sl],
                                 stills.labels[test_sl], device)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "zero_shot_acc": acc["class"],
                        **{f"{a}_acc": acc[a] for a in ATTRIBUTES}, "seconds": seconds})
        if progress:
            print(f"pretrain epoch {epoch + 1}/{p.epochs}: loss {np.mean(losses):.3f}, zero-shot "
                  f"accuracy on {test_sl.stop - test_sl.start} held-out stills: class {acc['class']:.1f} %, "
                  + ", ".join(f"{a} {acc[a]:.1f} %" for a in ATTRIBUTES) + f" ({seconds:.0f} s)", flush=True)
        atomic_torch_save({"model": model.state_dict(), "heads": heads.state_dict(), "optim": opt.state_dict(),
                           "sched": sched.state_dict(), "history": history, "epoch": epoch,
                           "seconds": seconds, "settings": _identity(cfg)}, state_path)
    atomic_torch_save(model.clip.state_dict(), target)
    atomic_write_text(folder / "pretrain.json", json.dumps(
        {"settings": _identity(cfg), "history": history, "seconds": seconds,
         "classes": 240, "towers": str(target)}, indent=1))
    state_path.unlink(missing_ok=True)
    return target
