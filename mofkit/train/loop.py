"""Training: the uniform-K baseline and MOF's bilevel schedule; resumable; one process or DDP.

The :class:`Trainer` runs one training *task* (``mofkit.train.tasks``: the baseline, MOF, MOF with
interleaved frame updates, ...) without branching on which: the task gives each base step its
frames, does the epoch-end work and adds its state to the checkpoint. What the tasks do:

One epoch (``cfg.mof.enabled`` False, the baseline): K frames per video (uniform, or rand from the
cached dense grid), random resized crop, one random caption per video, symmetric InfoNCE, AdamW with
warmup + cosine, gradient clipping and accumulation, mixed precision on CUDA only.

With MOF (``cfg.mof.enabled``), per epoch as in the reference:

1. base epoch: the same model step, but on each video's K *compressed frames* from the bank;
2. validation on the test split (K uniform frames of each test video);
3. meta epoch (every ``mof.meta_every`` epochs), model frozen and in eval mode: for each meta batch
   the hypergradient of the whole-video loss (N frames, ``mofkit.bilevel.meta``) is accumulated
   into the bank; then ONE Adam step moves all frames (``mof.update = "epoch"``). With
   ``mof.update = "batch"`` the meta step is interleaved with the base steps instead: each batch
   first moves its own frames one Adam step along their hypergradient, then trains the model on the
   moved frames.
4. checkpoint: model, optimisers, schedulers, RNG states, config, history and the bank generation.

Every random choice (order, frames, captions, crops) is a function of (seed, epoch, video), so a run
resumed from a checkpoint ends with the same weights as one that was never interrupted, and a run
over N processes sees the same global batches as one process.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mofkit.config import Config
from mofkit.data.reencode import manifest_record
from mofkit.device import autocast, get_device, grad_scaler, resolve_precision, to_device
from mofkit.eval.metrics import DIRECTIONS
from mofkit.runfiles import CONFIG_FILE, METRICS_CSV, METRICS_FILE, RANKS_FILE
from mofkit.train import distributed as D
from mofkit.train.batches import epoch_batches, family_groups  # noqa: F401  (the loop's batches)
from mofkit.train.schedule import warmup_cosine
from mofkit.train.tasks import task_class
from mofkit.train.checkpoint import (ResumeError, atomic_torch_save, atomic_write_text,
                                     checkpoint_path, load_checkpoint, rng_state, set_rng_state)


LOSS_READS_EVERY = 16  # base steps whose losses are read back from the device in one transfer


@dataclass
class TrainResult:
    """What a training run produced (on every rank; files are written by rank 0 only)."""

    out_dir: Path  # the run's folder: checkpoint.pt, metrics.json, metrics.csv, config.json
    history: list[dict] = field(default_factory=list)  # one dict per epoch
    final: dict | None = None  # test metrics after the last epoch (t2v, v2t, t2v_dsl, v2t_dsl, ...)
    train_seconds: float = 0.0  # wall time spent training, summed over resumed sessions
    resumed_from: int | None = None  # last finished epoch found in the checkpoint, if resumed
    is_main: bool = True  # rank 0


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Holds one run's state. Use :func:`train`; the class is public for notebooks that step it."""

    def __init__(self, cfg: Config, *, progress: bool = True, progress_events: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.device = get_device(cfg.device)
        self.info = D.init_distributed(self.device.type, cfg.train.dist_timeout_minutes)
        if self.info.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.info.local_rank)
        self.precision = resolve_precision(cfg.train.precision, self.device)
        self.out_dir = Path(cfg.out_dir)
        if cfg.train.batch_size % self.info.world_size:
            raise ValueError(f"train.batch_size={cfg.train.batch_size} must be divisible by the "
                             f"number of processes ({self.info.world_size})")
        _seed_everything(cfg.train.seed)
        self.task_cls = task_class(cfg)  # the method (its settings checked before any work)
        self._setup_model()
        self._setup_data()
        self._setup_optim()
        self.history: list[dict] = []
        self.start_epoch = 0
        self.train_seconds = 0.0
        self.nonfinite_total = 0
        self._epoch_nonfinite = 0
        self.task = self.task_cls(self)
        from mofkit.train.monitor import RunMonitor

        self.monitor = RunMonitor(self.out_dir, "/".join(self.out_dir.parts[-3:]), cfg.train.epochs,
                                  self.steps_per_epoch, enabled=self.info.is_main and progress_events,
                                  tensorboard=cfg.train.tensorboard)

    # -- setup ---------------------------------------------------------------------------------

    def _setup_model(self) -> None:
        from mofkit.data.preprocess import Preprocessor
        from mofkit.models import create_from_config

        from mofkit.train.pretrain import resolve_model_config

        model_cfg = self.cfg.model
        for turn in ((True,) if not self.info.enabled else (self.info.is_main, not self.info.is_main)):
            if turn:  # rank 0 pretrains where needed, the others then read its towers
                model_cfg = resolve_model_config(self.cfg, progress=self.progress)
            D.barrier(self.info)
        self.bundle = create_from_config(model_cfg, self.device)
        self.model = self.bundle.model
        # the method's own modules (a frame compressor, N decoded frames -> K, and what training
        # calls: the same, under DDP where it is trained), built by its task right after the model
        self.compressor, self.compressor_net = self.task_cls.build_compressor(self)
        self.preprocess = Preprocessor(self.bundle.image_size, self.bundle.mean, self.bundle.std)
        self.ddp = None
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)

    def _setup_data(self) -> None:
        from mofkit.train.data import prepare_data

        self.data = prepare_data(self.cfg, self.task_cls.data_needs(self.cfg), self.bundle.tokenizer,
                                 self.info, progress=self.progress)
        self.batch_groups = family_groups(self.cfg, self.data.train.video_ids) \
            if self.cfg.train.family_batches else None

    def _setup_optim(self) -> None:
        from mofkit.models import param_groups

        t = self.cfg.train
        groups = param_groups(self.model, lr=t.lr, tower_lr=t.tower_lr, weight_decay=t.weight_decay)
        groups += self.task_cls.param_groups(self)  # e.g. a compressor trained end to end
        try:  # the fused kernel is ~20x faster than the per-tensor loop on CPU (large embeddings)
            self.optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                                               fused=True)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=tuple(t.betas), eps=t.eps)
        from mofkit.train.banks import batches_per_epoch

        n_batches = batches_per_epoch(self.cfg, len(self.data.train), self.info.world_size,
                                      self.info.spans_machines)
        self.steps_per_epoch = max(1, n_batches // t.grad_accum)
        total = self.steps_per_epoch * t.epochs
        warmup = int(round(t.warmup_fraction * total))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           warmup_cosine(total, warmup))
        self.scaler = grad_scaler(self.device, self.precision)

    def eval_inputs(self, frames: torch.Tensor) -> torch.Tensor:
        """Test-time model input of uint8 frames (B, T, S, S, 3): normalised, then what the task
        makes of them (a compressor's K frames from T = N). (B, K, 3, S, S)."""
        return self.task.eval_inputs(self.preprocess.eval(frames))

    # -- checkpoint ----------------------------------------------------------------------------

    def save(self, epoch: int, final: dict | None = None) -> None:
        """Checkpoint (rank 0 writes); then the task's after-checkpoint work on every rank.

        The task's state is taken on every rank (a sharded bank seals each rank's shards and
        gathers their states), then rank 0 writes it with the rest."""
        task_state = self.task.state_dict()
        if self.info.is_main:
            self._write_checkpoint(epoch, final, task_state)
        self.task.after_checkpoint()

    def _write_checkpoint(self, epoch: int, final: dict | None, task_state: dict) -> None:
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "rng": rng_state(), "epoch": epoch, "config": self.cfg.to_dict(),
            "history": self.history, "train_seconds": self.train_seconds,
            "nonfinite_total": self.nonfinite_total, "final": final, "arch": self.cfg.model.arch,
            "task": self.task.name, "frame_steps": 0, "bank": None, **task_state,
        }
        atomic_torch_save(state, checkpoint_path(self.out_dir))

    def load(self) -> dict | None:
        path = checkpoint_path(self.out_dir)
        if not path.is_file():
            return None
        ckpt = load_checkpoint(path, map_location="cpu")
        saved = Config.from_dict(ckpt["config"])
        _check_resumable(saved, self.cfg, path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.history = list(ckpt["history"])
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.nonfinite_total = int(ckpt.get("nonfinite_total", 0))
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.task.load_state_dict(ckpt)
        return ckpt

    # -- steps ---------------------------------------------------------------------------------

    def _forward_loss(self, tokens: torch.Tensor, frames: torch.Tensor, batch: dict | None = None,
                      epoch: int = 0) -> torch.Tensor:
        from mofkit.models.loss import contrastive_loss

        net = self.ddp if self.ddp is not None else self.model
        with autocast(self.device, self.precision):
            text, video, scale = net(tokens, frames)
        extra = self.task.extra_loss(batch, epoch, video.float()) if batch is not None else None
        text = D.gather_features(text.float(), self.info)
        video = D.gather_features(video.float(), self.info)
        loss = contrastive_loss(text, video, scale.float())
        return loss if extra is None else loss + extra

    def report_nonfinite(self, rows: np.ndarray, what: str) -> None:
        """Warn about training rows whose frames or hypergradients are not finite; count them."""
        ids = [self.data.train.video_ids[int(r)] for r in rows]
        self.nonfinite_total += len(ids)
        self._epoch_nonfinite += len(ids)
        warnings.warn(f"non-finite {what} for videos {ids[:10]}{' ...' if len(ids) > 10 else ''}: "
                      f"their update is skipped ({self.nonfinite_total} so far)", RuntimeWarning)

    def _learning_rates(self) -> dict[str, float]:
        """The current learning rate of each parameter group, as ``lr_<group name>``."""
        return {f"lr_{group.get('name', j)}": float(group["lr"])
                for j, group in enumerate(self.optimizer.param_groups)}

    def tqdm(self, it, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(it, total=total, desc=desc, disable=not (self.progress and self.info.is_main),
                    leave=False, dynamic_ncols=True)

    def base_epoch(self, epoch: int) -> dict:
        """One pass over the training videos updating the model on the frames the task gives."""
        t = self.cfg.train
        batches = self.task.base_batches(epoch)
        loader = self.data.train_loader(batches, epoch, with_meta=self.task.meta_frames,
                                        frames=self.task.loads_frames)
        self.model.train()
        losses, n_videos, t0 = [], 0, time.time()
        # The loader's worker processes start (fork) here, before the task's reader threads do:
        # a process forked while other threads hold locks can deadlock.
        bar = self.tqdm(iter(loader), len(batches), f"epoch {epoch + 1}/{t.epochs}")
        self.optimizer.zero_grad(set_to_none=True)
        # Losses stay on the device and are read back LOSS_READS_EVERY steps at a time (one
        # transfer), so a step never waits for the device just to log; the monitor still gets
        # every step's loss.
        pending: list[tuple[torch.Tensor, tuple | None]] = []

        def read_losses() -> None:
            values = torch.stack([p[0] for p in pending]).tolist() if pending else []
            for value, (_, logged) in zip(values, pending):
                losses.append(value * t.grad_accum)
                if logged is not None:  # (step, learning rates) of an optimiser step
                    self.monitor.step(epoch, logged[0], self.steps_per_epoch, value * t.grad_accum,
                                      logged[1])
            pending.clear()
            if losses:
                bar.set_postfix(loss=f"{losses[-1]:.3f}",
                                vid_s=f"{n_videos / (time.time() - t0):.0f}")

        self.task.start_batches(batches, epoch)
        try:
            for i, batch in enumerate(bar):
                frames, tokens = self.task.step_inputs(batch, epoch)  # (B, K, 3, S, S), (B, L)
                loss = self._forward_loss(to_device(tokens, self.device), frames, batch,
                                          epoch) / t.grad_accum
                self.scaler.scale(loss).backward()
                logged = None
                if (i + 1) % t.grad_accum == 0:
                    if t.grad_clip > 0:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(
                            [p for g in self.optimizer.param_groups for p in g["params"]], t.grad_clip)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
                    logged = ((i + 1) // t.grad_accum, self._learning_rates())
                pending.append((loss.detach().float(), logged))
                n_videos += len(batch["index"]) * self.info.world_size
                if len(pending) >= LOSS_READS_EVERY:
                    read_losses()
            read_losses()
        finally:
            self.task.stop_batches()
        stats = {"train_loss": D.all_reduce_mean(float(np.mean(losses)) if losses else float("nan"),
                                                 self.info, self.device),
                 "lr": self.optimizer.param_groups[0]["lr"], "base_seconds": time.time() - t0}
        stats.update(self.task.epoch_stats())
        return stats

    def evaluate(self) -> dict | None:
        """Test metrics on rank 0 (None elsewhere)."""
        from mofkit.eval.encode import evaluate_model

        if not self.info.is_main:
            return None
        d = self.data
        clips = self.task.test_clips(d)
        res = evaluate_model(self.model, frames_of=clips.frames_of,
                             num_videos=len(d.test), tokens=d.test_tokens,
                             caption_video=d.test_caption_video, preprocess=self.eval_inputs,
                             device=self.device, precision=self.precision,
                             batch_size=self.cfg.train.eval_batch_size, dropped=d.test_dropped)
        res.pop("sim", None)
        video, text = res.pop("video"), res.pop("text")
        self._rank_counts = res.pop("counts")  # kept apart: ranks.npz, not the JSON metrics
        if d.test_probes:
            from mofkit.eval.encode import encode_texts
            from mofkit.eval.probes import win_rate

            res["caption_test"] = {}
            for attr, (rows, tokens) in d.test_probes.items():
                altered = encode_texts(self.model, tokens, device=self.device, precision=self.precision)
                res["caption_test"][attr] = win_rate(video[d.test_caption_video[rows]], text[rows], altered)
        if d.test_groups:
            from mofkit.eval.metrics import metrics_from_counts

            higher, tied = self._rank_counts["t2v"]
            res["groups"] = {}
            for name, videos in d.test_groups.items():
                queries = videos[d.test_caption_video]  # (Q,) the groups of the queries' videos
                res["groups"][name] = {
                    "queries": int(queries.sum()),
                    "t2v_R1": metrics_from_counts(higher[queries], tied[queries])["R1"]
                    if queries.any() else None}  # (None, not NaN: a history row must equal itself)
        return res

    def _save_ranks(self) -> None:
        """``ranks.npz``: each test query's rank counts at the end, for paired statistics."""
        from mofkit.eval.stats import save_ranks

        d = self.data
        q2v = d.test_caption_video
        if q2v is not None and np.array_equal(q2v, np.arange(len(d.test))):
            q2v = None
        save_ranks(self.out_dir / RANKS_FILE, self._rank_counts, video_ids=d.test.video_ids,
                   query_to_video=q2v)

    # -- the run -------------------------------------------------------------------------------

    def fit(self, *, resume: bool = True, stop_after_epoch: int | None = None) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        resumed = None
        ckpt = self.load() if resume else None
        if ckpt is not None:
            resumed = int(ckpt["epoch"])
            if self.start_epoch >= t.epochs and ckpt.get("final") is not None:
                self.monitor.end(ckpt["final"], reused=True)
                return self._result(ckpt["final"], resumed)
        self.task.start()
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / CONFIG_FILE, json.dumps(cfg.to_dict(), indent=2))
        final = None
        self.monitor.start(self.start_epoch, resumed)
        for epoch in range(self.start_epoch, t.epochs):
            t_epoch = time.time()
            self._epoch_nonfinite = 0
            row: dict[str, Any] = {"epoch": epoch + 1}
            row.update(self.base_epoch(epoch))
            last = epoch == t.epochs - 1
            if last or (t.eval_every and (epoch + 1) % t.eval_every == 0):
                metrics = self.evaluate()
                if metrics is not None:
                    for direction in DIRECTIONS:
                        row.update({f"{direction}_{k}": v for k, v in metrics[direction].items()})
                    for attr, rate in metrics.get("caption_test", {}).items():
                        row[f"caption_{attr}"] = rate
                    for name, g in metrics.get("groups", {}).items():
                        if g["t2v_R1"] is not None:
                            row[f"t2v_R1_{name}"] = g["t2v_R1"]
                    if last:
                        final = metrics
                        self._save_ranks()
            row.update(self.task.end_epoch(epoch))
            row["nonfinite_skipped"] = self._epoch_nonfinite
            row["epoch_seconds"] = time.time() - t_epoch
            self.train_seconds += row["epoch_seconds"]
            row["train_seconds"] = self.train_seconds
            self.history.append(row)
            self._write_metrics(final)
            self.save(epoch, final)
            self.monitor.epoch(row)
            if self.progress and self.info.is_main:
                _print_epoch(row, t.epochs)
            if stop_after_epoch is not None and epoch >= stop_after_epoch:
                break
        if final is not None:
            self.monitor.end(final)
        self.monitor.close()
        D.barrier(self.info)
        return self._result(final, resumed)

    def _result(self, final, resumed) -> TrainResult:
        return TrainResult(out_dir=self.out_dir, history=self.history, final=final,
                           train_seconds=self.train_seconds, resumed_from=resumed,
                           is_main=self.info.is_main)

    def _write_metrics(self, final: dict | None) -> None:
        if not self.info.is_main:
            return
        import pandas as pd

        doc = {"config": self.cfg.to_dict(), "history": self.history, "final": final,
               "train_seconds": self.train_seconds,
               "dataset": {"train_videos": len(self.data.train), "test_videos": len(self.data.test),
                           "train_dropped": self.data.train_dropped,
                           "test_dropped": self.data.test_dropped}}
        reencoded = self._reencoding()
        if reencoded is not None:
            doc["dataset"]["reencode"] = reencoded
        atomic_write_text(self.out_dir / METRICS_FILE, json.dumps(doc, indent=2, default=float))
        pd.DataFrame(self.history).to_csv(self.out_dir / METRICS_CSV, index=False)

    def _reencoding(self) -> dict | None:
        """The re-encoding manifest of the run's video folder (``mofkit reencode``), if it has one."""
        d = self.cfg.data
        if not d.root and not d.video_dir:
            return None
        folder = Path(d.video_dir) if d.video_dir else Path(d.root) / "videos"
        try:
            return manifest_record(folder)
        except ValueError as e:  # a damaged manifest: say so in the record, do not fail the run
            return {"error": str(e)}


def _check_resumable(saved: Config, cfg: Config, path: Path) -> None:
    """A checkpoint may be resumed with more epochs or another device, not with another setup."""
    from mofkit.train.tasks import settings_not_read

    a, b = saved.to_dict(), cfg.to_dict()
    for d in (a, b):
        for key in settings_not_read(cfg):  # e.g. the frame optimiser's newer options, for a baseline
            section, leaf = key.split(".")
            d[section].pop(leaf, None)
        # What may change between sessions of one run: its length, where and how it runs.
        for key in ("device", "out_dir", "profile", "study"):
            d.pop(key, None)
        d["mof"].pop("bank_dir", None)  # the bank may move (a sharded one is checked shard by shard)
        d["train"].pop("epochs")
        d["train"].pop("tensorboard", None)
        d["train"].pop("dist_timeout_minutes", None)
        for key in ("num_workers", "cache_dir"):
            d["data"].pop(key)
        for key in ("root", "video_dir"):  # the same folder, however it was spelled
            if d["data"][key]:
                d["data"][key] = str(Path(d["data"][key]).resolve())
    if a != b:
        diff = [f"{s}.{k}" for s in a if isinstance(a[s], dict)
                for k in a[s] if a[s][k] != b[s].get(k)]
        raise ResumeError(f"checkpoint {path} was written with a different config "
                           f"(differs in {diff}); pass resume=False (--fresh) or another out_dir")


def _print_epoch(row: dict, epochs: int) -> None:
    parts = [f"epoch {row['epoch']}/{epochs}", f"loss {row['train_loss']:.3f}"]
    if "t2v_R1" in row:
        parts.append(f"t2v R@1 {row['t2v_R1']:.1f} R@5 {row['t2v_R5']:.1f}")
    if "meta_loss_whole" in row:
        parts.append(f"meta L1 {row['meta_loss_compressed']:.3f} L2 {row['meta_loss_whole']:.3f}")
    parts.append(f"{row['epoch_seconds']:.0f} s")
    print(" | ".join(parts), flush=True)


def train(cfg: Config, *, resume: bool = True, progress: bool = True,
          stop_after_epoch: int | None = None) -> TrainResult:
    """Train (or resume, or return the results of a finished run in ``cfg.out_dir``).

    Args:
        cfg: the run's config (``mofkit.config.get_config``).
        resume: continue from ``<out_dir>/checkpoint.pt`` when present; a finished run returns
            its stored results at once.
        progress: tqdm bars and one line per epoch (rank 0 only).
        stop_after_epoch: stop after this (0-based) epoch, as an interruption would.

    Returns:
        :class:`TrainResult`.
    """
    trainer = Trainer(cfg, progress=progress)
    try:
        return trainer.fit(resume=resume, stop_after_epoch=stop_after_epoch)
    finally:
        D.cleanup(trainer.info)
