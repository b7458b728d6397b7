"""Training methods as tasks: what a base step trains on, what an epoch's end does, what is saved.

The :class:`~mofkit.train.loop.Trainer` runs any task without knowing which: every optimiser step
asks the task for the step's frames (:meth:`Task.step_inputs`), every epoch ends with
:meth:`Task.end_epoch`, and checkpoints carry :meth:`Task.state_dict`. A new method (a control, a
frame compressor, a pretraining stage) is a new task registered in :data:`TASKS`, not a flag in
the loop.

Tasks here:

* ``baseline``: K frames per video decoded from the cache (``data.train_sampling``: uniform
  segment mid-points or one random frame per segment), the random resized crop of every epoch.
* ``mof``: MOF with the reference's schedule (``mof.update = "epoch"``): the base step trains on
  each video's K compressed frames from the bank; every ``mof.meta_every`` epochs a meta epoch
  accumulates every training video's hypergradient and then moves all frames by one Adam step.
  No meta epoch runs after the last evaluation: frames it moved would never be trained on.
* ``mof-batch`` (``mof.update = "batch"``): each batch first moves its own frames one Adam step
  along their hypergradient, then the model trains on the moved frames.
* ``mof-frozen`` (``mof.update = "none"``), two controls at MOF's training cost: the bank
  initialised as MOF's (``frozen``) or from frames inside the captioned events (``mof.init =
  "oracle"``, synthetic corpus), never updated.

* ``compress``: a frame compressor (``compress.name``, :mod:`mofkit.compress`) makes each video's
  K frames from its N, at training and test time; a learned one trains end to end.
* ``compress-amortised``: MOF amortised, the compressor's weights moved along the hypergradient of
  the whole-video loss (:mod:`mofkit.bilevel.amortised`) before each base step.

With ``mof.augment`` the bank tasks crop (and flip) each batch's compressed frames exactly as the
baseline crops its decoded frames, seeded by (seed, epoch, video); the meta step sees them uncropped.

Where the bank lives across processes (one shared bank that rank 0 writes and the others reopen,
or a shard per rank on its own disk, ``mof.bank_shards``) is :mod:`mofkit.train.banks`, the one
place that knows about it; the bank tasks draw their batches from it too.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mofkit.bilevel.adam import EPS_SCALES
from mofkit.bilevel.bank import step_lr
from mofkit.data.datasets import dataset_spec
from mofkit.device import host_buffer, to_device
from mofkit.train.feed import ReadAhead
from mofkit.train import distributed as D
from mofkit.train.banks import bank_placement
from mofkit.train.data import DataNeeds

READ_AHEAD = 3  # batches of bank frames read ahead of the step (each 300 MB at the paper shape)
# threads reading them: one copies 3 to 5 GB/s from the page cache, a step of 50 ms wants 6
READERS = max(2, min(4, (os.cpu_count() or 1) // 4))

# the training loop's Trainer (mofkit.train.loop), named without importing the loop, which imports
# this module: only its attributes are read here
Trainer = Any

if TYPE_CHECKING:
    from mofkit.config import Config


class Task:
    """A training method. Subclasses override what differs from the plain baseline step.

    Args:
        trainer: the run's trainer (model, data, device, distributed info, nonfinite counter).
    """

    name = "task"
    meta_frames = False  # the training loader yields each video's N whole-video frames too
    loads_frames = True  # the training loader decodes each video's K frames (a bank task reads its own)

    def __init__(self, trainer: "Trainer"):
        self.trainer = trainer
        self.cfg = trainer.cfg

    # what the task builds before the trainer's optimiser exists (class-level: the task object is
    # made once the data and optimiser are in place)

    @classmethod
    def data_needs(cls, cfg: "Config") -> DataNeeds:
        """What the method reads beyond each split's K uniform frames (the frame caches and the
        training items' frames). The baseline: K frames per video, uniform, or with
        ``data.train_sampling = "rand"`` one random frame per segment from the dense grid."""
        rand = cfg.data.train_sampling == "rand"
        return DataNeeds(train_grid=rand, item_source="grid" if rand else "k",
                         item_sampling=cfg.data.train_sampling)

    @classmethod
    def build_compressor(cls, trainer: "Trainer") -> tuple[torch.nn.Module | None, torch.nn.Module | None]:
        """The task's frame compressor (N decoded frames -> K) and what training calls (the same,
        under DDP where several processes train its weights); ``(None, None)`` for the frame tasks.
        Called right after the model is built, so the compressor's initial weights come from the
        same random state whatever the task."""
        return None, None

    @classmethod
    def param_groups(cls, trainer: "Trainer") -> list[dict[str, Any]]:
        """Parameter groups the task adds to the model's optimiser."""
        return []

    def eval_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Test-time model input from normalised frames (B, T, 3, S, S): the K frames as they are."""
        return x

    def test_clips(self, data):
        """The test split's frames this task's model reads: each video's K uniform frames."""
        return data.test_clips

    def start(self) -> None:
        """Before the first epoch of a session, after any checkpoint has been loaded."""

    def base_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's base batches of an epoch (training rows): cut from one global order."""
        from mofkit.train.batches import epoch_batches

        tr, t = self.trainer, self.cfg.train
        return epoch_batches(len(tr.data.train), t.batch_size, t.seed, epoch, tr.info,
                             groups=tr.batch_groups)

    def start_batches(self, batches: list[np.ndarray], epoch: int) -> None:
        """Before a base epoch's first step, with the batches it will take (to read ahead)."""

    def stop_batches(self) -> None:
        """After a base epoch's last step, or when it stops early."""

    def step_inputs(self, batch: dict, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The frames (B, K, 3, S, S) on the device and tokens (B, L) one base step trains on."""
        raise NotImplementedError

    def extra_loss(self, batch: dict, epoch: int, video: torch.Tensor) -> torch.Tensor | None:
        """A term added to the base step's loss, given the step's video embeddings (B, D) of this
        process (before the gather); None adds nothing."""
        return None

    def epoch_stats(self) -> dict[str, float]:
        """Numbers the base epoch's history row gets from the task (e.g. interleaved meta losses)."""
        return {}

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """After the epoch's base pass and evaluation: the epoch-end work and its history entries."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds of the task (top-level checkpoint keys)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint's keys (absent keys keep the start values)."""

    def after_checkpoint(self) -> None:
        """After a checkpoint is written (on every rank)."""


class BaselineTask(Task):
    """The uniform-K (or rand) baseline: decoded frames, a random resized crop per epoch."""

    name = "baseline"

    def step_inputs(self, batch: dict, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        tr, seed = self.trainer, self.cfg.train.seed
        rows = batch["index"].numpy()
        frames = tr.preprocess.train_with_seeds(
            batch["frames"].to(tr.device), [(seed, epoch, int(r)) for r in rows],
            **tr.data.aug)  # (B, K, 3, S, S)
        return frames, batch["tokens"]


class MOFTask(Task):
    """Meta-Optimized Frames with one frame update per meta epoch (the reference's schedule)."""

    name = "mof"
    loads_frames = False  # the base step's frames come from the bank

    @classmethod
    def data_needs(cls, cfg: "Config") -> DataNeeds:
        """The baseline's, plus the training videos' dense grid, from which each meta pass draws
        ``mof.meta_frames`` whole-video frames per video."""
        d, m = cfg.data, cfg.mof
        if d.dense_frames < m.meta_frames:
            raise ValueError(f"mof.meta_frames={m.meta_frames} whole-video frames are drawn from a "
                             f"grid of data.dense_frames={d.dense_frames}; set data.dense_frames >= "
                             f"{m.meta_frames}")
        return dataclasses.replace(super().data_needs(cfg), train_grid=True, meta_frames=m.meta_frames,
                                   meta_sampling=m.meta_sampling)

    def __init__(self, trainer: "Trainer"):
        super().__init__(trainer)
        self.shared = bank_placement(trainer)  # one shared bank, or this rank's shards
        self.frame_steps = 0  # frame-lr schedule position: meta epochs (or epochs) with frame updates
        self._ahead: ReadAhead | None = None  # bank frames of the coming base batches

    @property
    def bank(self):
        return self.shared.bank

    # -- the run -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.bank is None:
            self.shared.create()
            self.snapshot(0)

    def base_batches(self, epoch: int) -> list[np.ndarray]:
        return self.shared.base_batches(epoch, self.trainer.batch_groups)

    def start_batches(self, batches: list[np.ndarray], epoch: int) -> None:
        self.stop_batches()
        self._ahead = ReadAhead(batches, self._read_host, depth=READ_AHEAD, workers=READERS)

    def stop_batches(self) -> None:
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def step_inputs(self, batch: dict, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = batch["index"].numpy()
        return self._base_inputs(batch, epoch, self.compressed_frames(rows, self._next_host(rows)))

    def _base_inputs(self, batch: dict, epoch: int,
                     frames_kept: tuple[torch.Tensor, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = batch["index"].numpy()
        frames, kept = frames_kept  # (B, K, 3, S, S) on the device, the rows they belong to
        if self.cfg.mof.augment:  # the baseline's crop of this (seed, epoch, video), on bank frames
            tr = self.trainer
            frames = tr.preprocess.crop_with_seeds(
                frames, [(self.cfg.train.seed, epoch, int(r)) for r in kept], **tr.data.aug)
        if len(kept) == len(rows):
            return frames, batch["tokens"]
        return frames, batch["tokens"][torch.from_numpy(np.isin(rows, kept))]

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        if (epoch + 1) % self.cfg.mof.meta_every:
            return {}
        if epoch + 1 == self.cfg.train.epochs:  # frames moved now would never be trained on
            return {}
        out = self.meta_epoch(epoch)
        self.snapshot(epoch + 1)
        return out

    def state_dict(self) -> dict[str, Any]:
        # rank 0 writes the checkpoint; the bank state names the sealed generation
        return {"frame_steps": self.frame_steps, "bank": self.shared.commit()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.frame_steps = int(state.get("frame_steps", 0))
        if state.get("bank") is not None:
            self.shared.restore(state["bank"])

    def after_checkpoint(self) -> None:
        self.shared.prune()

    # -- the meta level ------------------------------------------------------------------------

    def frame_lr(self) -> float:
        m = self.cfg.mof
        return step_lr(m.frame_lr, self.frame_steps, m.frame_lr_step, m.frame_lr_gamma)

    def frame_adam(self) -> dict[str, Any]:
        """The frame optimiser's settings other than the learning rate (bank step keywords)."""
        m = self.cfg.mof
        return {"betas": tuple(m.frame_betas), "eps": m.frame_eps, "eps_scale": m.frame_eps_scale,
                "max_change": m.frame_step_cap}

    def _read_host(self, rows: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Bank frames of these rows in a host buffer (pinned for a CUDA device), in the bank's
        storage dtype: a float16 bank moves half the bytes and is widened on the device."""
        buf = host_buffer((len(rows), *self.bank.frame_shape), self.bank.torch_dtype, self.trainer.device)
        return rows, self.bank.read(rows, out=buf)

    def _next_host(self, rows: np.ndarray) -> torch.Tensor | None:
        """The read-ahead frames of this batch (None without a read-ahead running)."""
        if self._ahead is None:
            return None
        got, host = self._ahead.next()
        if not np.array_equal(got, rows):
            raise RuntimeError(f"{type(self).__name__}: the bank read ahead rows {got[:4]}... for a "
                               f"batch of rows {rows[:4]}...; start_batches was given other batches")
        return host

    def compressed_frames(self, rows: np.ndarray,
                          host: torch.Tensor | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Bank frames of these training rows on the device, minus rows holding non-finite values.

        Args:
            rows: training rows.
            host: their frames already read into a host buffer (:meth:`_read_host`); None reads now.

        Returns:
            (frames (B', K, 3, S, S) on the device, their rows). The finiteness check runs on the
            device; one flag is read back (the rows are only looked at when it says some failed).
        """
        if host is None:
            host = self._read_host(rows)[1]
        x = to_device(host, self.trainer.device).float()  # (B, K, 3, S, S) float32
        ok = torch.isfinite(x.flatten(1)).all(dim=1)  # (B,) on the device
        if bool(ok.all()):
            return x, rows
        ok = ok.cpu().numpy()
        self.trainer.report_nonfinite(rows[~ok], "frame")
        return x[torch.from_numpy(ok).to(x.device)], rows[ok]

    def meta_step(self, rows: np.ndarray, tokens: torch.Tensor, meta_frames: torch.Tensor,
                  *, apply_now: bool, host: torch.Tensor | None = None) -> tuple[float, float] | None:
        """Hypergradient for one meta batch; accumulate it in the bank or apply it at once.

        ``host``: the rows' bank frames already read (:meth:`_read_host`); None reads them now."""
        from mofkit.bilevel.meta import hypergradient
        from mofkit.device import autocast
        from mofkit.models.loss import contrastive_loss

        tr, m = self.trainer, self.cfg.mof
        x, kept = self.compressed_frames(rows, host)
        if len(kept) < 2:  # a contrastive loss needs at least two videos
            return None
        if len(kept) < len(rows):  # (a copy only then: the loader's batch may be in pinned memory)
            keep = torch.from_numpy(np.isin(rows, kept))
            meta_frames, tokens = meta_frames[keep], tokens[keep]
        v = tr.preprocess.eval(to_device(meta_frames, tr.device))  # (B, N, 3, S, S)
        was_training = tr.model.training
        tr.model.eval()  # the meta step sees no dropout and changes no weight
        res = hypergradient(tr.model, contrastive_loss, to_device(tokens, tr.device), x, v,
                            alpha=m.alpha, method=m.hypergrad, fd_eps=m.fd_eps,
                            autocast=autocast(tr.device, tr.precision), chunk=m.meta_chunk)
        tr.model.train(was_training)
        finite = res.finite.cpu().numpy()
        if not finite.all():
            tr.report_nonfinite(kept[~finite], "hypergradient")
        rows_ok, grad = kept[finite], res.grad[torch.from_numpy(finite)].float().cpu()
        if len(rows_ok):
            if apply_now:
                skipped = self.bank.step_rows(rows_ok, grad, lr=self.frame_lr(), **self.frame_adam())
            else:
                skipped = self.bank.accumulate(rows_ok, grad)
            if len(skipped):
                tr.report_nonfinite(np.asarray(skipped), "hypergradient")
        return res.loss_compressed, res.loss_whole

    def meta_epoch(self, epoch: int) -> dict:
        """Accumulate every training video's hypergradient, then one Adam step on all frames."""
        tr, t = self.trainer, self.cfg.train
        info = tr.info
        mine = self.shared.meta_batches(epoch, tr.batch_groups)  # every video once, on one rank
        loader = tr.data.train_loader(mine, epoch, with_meta=True, frames=False)
        l1, l2, t0 = [], [], time.time()
        batches = iter(loader)  # its worker processes fork before the reader threads start
        with ReadAhead(mine, self._read_host, depth=READ_AHEAD, workers=READERS) as ahead:
            for batch in tr.tqdm(batches, len(mine), f"meta {epoch + 1}/{t.epochs}"):
                rows, host = ahead.next()
                out = self.meta_step(rows, batch["tokens"], batch["meta_frames"], apply_now=False,
                                     host=host)
                if out is not None:
                    l1.append(out[0])
                    l2.append(out[1])
        stats = self.shared.step_accumulated(lr=self.frame_lr(), **self.frame_adam())
        self.frame_steps += 1
        out = {"meta_loss_compressed": D.all_reduce_mean(float(np.mean(l1)) if l1 else float("nan"),
                                                         info, tr.device),
               "meta_loss_whole": D.all_reduce_mean(float(np.mean(l2)) if l2 else float("nan"),
                                                    info, tr.device),
               "meta_seconds": time.time() - t0}
        out.update({f"frames_{k}": v for k, v in stats.items() if isinstance(v, (int, float))})
        return out

    def snapshot(self, epoch: int) -> None:
        """The first few training videos' compressed frames (rank 0's own, with a sharded bank),
        for the visualisation notebook.

        Frames are denormalised (``x * std + mean``: the [0, 1] image scale, not clipped) so that
        changes far below a grey level survive: ``epoch_000.npy`` holds the start in float32, and
        every later ``epoch_NNN.npy`` the change since then in float16 (a small change keeps its
        digits there, where a float16 image would round it away), half the bytes of float32.
        ``mofkit.viz.snapshots.load_snapshots`` adds them back up.
        """
        tr = self.trainer
        n = min(self.cfg.mof.snapshot_videos, len(self.shared.owned_rows()))
        if not tr.info.is_main or n == 0:
            return
        rows = self.shared.owned_rows()[:n]  # rank 0's own videos
        x = tr.preprocess.denormalize(self.bank.read(rows), clip=False)  # (n, K, 3, S, S)
        images = x.permute(0, 1, 3, 4, 2).contiguous().numpy()  # (n, K, S, S, 3) float32
        folder = tr.out_dir / "snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        if epoch == 0:
            np.save(folder / "epoch_000.npy", images)
            (folder / "videos.json").write_text(json.dumps(
                [tr.data.train.video_ids[int(r)] for r in rows]))
        else:
            start = np.load(folder / "epoch_000.npy")
            np.save(folder / f"epoch_{epoch:03d}.npy", (images - start).astype(np.float16))


class FrozenBankTask(MOFTask):
    """A control: MOF's bank, initialised the same way (``mof.init``), never updated.

    With ``mof.init = "uniform"`` it is MOF without its meta level (``frozen``); with
    ``mof.init = "oracle"`` (synthetic corpus) the frames are taken inside the captioned events
    (``oracle``): what MOF's frames could at best become.
    """

    name = "mof-frozen"

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        return {}


class MOFBatchTask(MOFTask):
    """MOF with the meta step interleaved: each batch moves its own frames, then trains on them."""

    name = "mof-batch"
    meta_frames = True

    def start(self) -> None:
        super().start()
        self._l1: list[float] = []
        self._l2: list[float] = []

    def step_inputs(self, batch: dict, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = batch["index"].numpy()
        out = self.meta_step(rows, batch["tokens"], batch["meta_frames"], apply_now=True,
                             host=self._next_host(rows))  # the frames before this batch's update
        if out is not None:
            self._l1.append(out[0])
            self._l2.append(out[1])
        return self._base_inputs(batch, epoch, self.compressed_frames(rows))  # the moved frames

    def epoch_stats(self) -> dict[str, float]:
        l1, l2 = self._l1, self._l2
        self._l1, self._l2 = [], []
        self._moved = bool(l1)  # some batch had two videos or more, so frames moved
        if not l1:
            return {}
        return {"meta_loss_compressed": float(np.mean(l1)), "meta_loss_whole": float(np.mean(l2))}

    def end_epoch(self, epoch: int) -> dict[str, Any]:
        self.frame_steps += 1  # the frame lr schedule counts epochs in interleaved mode
        if self._moved:
            self.snapshot(epoch + 1)
        return {}

    def after_checkpoint(self) -> None:
        super().after_checkpoint()
        # The checkpointed generation is sealed; with a shared bank interleaved updates go to a
        # fresh copy that every rank must open before writing its own rows.
        self.shared.begin_generation()


class CompressTask(Task):
    """A frame compressor (``compress.name``): each video's N frames, prepared as at test time,
    compressed to K, and the K frames cropped as the baseline crops its frames. A learned
    compressor trains end to end with the model (its parameters are a group of the model's
    optimiser); a fixed one runs without gradients.

    Compressing first and cropping the K outputs (not the N inputs) gives the compressor at
    training time exactly the inputs it gets at test time, gives the model the baseline's
    augmentation (the same crop box per video and epoch: ``Preprocessor.crop_with_seeds``), and
    crops K frames instead of N."""

    name = "compress"

    def __init__(self, trainer: "Trainer"):
        super().__init__(trainer)
        self._distill: list[float] = []  # 1 - cos to the N-frame embedding, per step (compress.distill)

    @classmethod
    def data_needs(cls, cfg: "Config") -> DataNeeds:
        """Each video's N = ``compress.input_frames`` frames at uniform positions of the dense grid,
        in training and at test time (the compressor makes the K)."""
        d, c = cfg.data, cfg.compress
        if not d.num_frames <= c.input_frames <= d.dense_frames:
            raise ValueError(f"compress.input_frames={c.input_frames} frames per video are "
                             f"compressed to data.num_frames={d.num_frames} and drawn from a grid of "
                             f"data.dense_frames={d.dense_frames}: it must lie between the two")
        return DataNeeds(train_grid=True, item_source="grid", item_frames=c.input_frames,
                         item_sampling="uniform", test_frames=c.input_frames)

    @classmethod
    def build_compressor(cls, trainer: "Trainer") -> tuple[torch.nn.Module, torch.nn.Module]:
        from mofkit.compress import compressor_from_config

        cfg = trainer.cfg
        comp = compressor_from_config(cfg.compress, cfg.data.num_frames).to(trainer.device)
        net = comp
        if comp.learned and trainer.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [trainer.device.index] if trainer.device.type == "cuda" else None
            net = DistributedDataParallel(comp, device_ids=ids)
        return comp, net

    @classmethod
    def trains_compressor(cls, cfg: "Config", compressor: torch.nn.Module) -> bool:
        """Whether the base level's optimiser trains the compressor (learned, ``end_to_end``)."""
        if not compressor.learned:
            return False
        if cfg.compress.training not in ("end_to_end", "amortised"):
            raise ValueError(f"compress.training={cfg.compress.training!r}: use 'end_to_end' (the "
                             f"retrieval loss through the compressor) or 'amortised' (MOF's hypergradient)")
        return cfg.compress.training == "end_to_end"

    @classmethod
    def param_groups(cls, trainer: "Trainer") -> list[dict[str, Any]]:
        comp = trainer.compressor
        if not cls.trains_compressor(trainer.cfg, comp):
            return []
        return [{"params": [p for p in comp.parameters() if p.requires_grad],
                 "lr": trainer.cfg.compress.lr, "weight_decay": 0.0, "name": "compressor"}]

    def eval_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The N test frames compressed to K, by the compressor in eval mode without gradients."""
        comp = self.trainer.compressor
        was_training = comp.training
        comp.eval()
        try:
            with torch.no_grad():
                return comp(x)
        finally:
            comp.train(was_training)

    def test_clips(self, data):
        """Each test video's N input frames (the compressor makes the K)."""
        return data.test_inputs

    def state_dict(self) -> dict[str, Any]:
        return {"compressor": self.trainer.compressor.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "compressor" in state:
            self.trainer.compressor.load_state_dict(state["compressor"])

    def compressed(self, batch: dict, epoch: int, *, grad: bool) -> torch.Tensor:
        tr, seed = self.trainer, self.cfg.train.seed
        rows = batch["index"].numpy()
        x = tr.preprocess.eval(batch["frames"].to(tr.device))  # (B, N, 3, S, S), as at test time
        with torch.set_grad_enabled(grad):
            y = tr.compressor_net(x)  # (B, K, 3, S, S)
            return tr.preprocess.crop_with_seeds(y, [(seed, epoch, int(r)) for r in rows],
                                                 **tr.data.aug)  # one crop per video

    def step_inputs(self, batch: dict, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        grad = self.trains_compressor(self.cfg, self.trainer.compressor)
        return self.compressed(batch, epoch, grad=grad), batch["tokens"]

    def extra_loss(self, batch: dict, epoch: int, video: torch.Tensor) -> torch.Tensor | None:
        """``compress.distill`` > 0: that weight times ``1 - cos`` between each video's embedding
        of its K compressed frames and the model's embedding of all N input frames, the latter a
        stop-gradient target (the model in eval mode, the same crop). The compressor learns to
        make K frames the model reads as it reads the whole video."""
        w = self.cfg.compress.distill
        if not w:
            return None
        from mofkit.device import autocast

        tr, seed = self.trainer, self.cfg.train.seed
        rows = batch["index"].numpy()
        x = tr.preprocess.train_with_seeds(batch["frames"].to(tr.device),
                                           [(seed, epoch, int(r)) for r in rows], **tr.data.aug)
        was_training = tr.model.training
        tr.model.eval()
        try:
            with torch.no_grad(), autocast(tr.device, tr.precision):
                target = tr.model.encode_video(x).float()  # (B, D), unit norm
        finally:
            tr.model.train(was_training)
        self._distill.append(float((1 - (video.detach() * target).sum(-1)).mean()))
        return w * (1 - (video * target).sum(-1)).mean()

    def epoch_stats(self) -> dict[str, float]:
        out = {"distill_gap": float(np.mean(self._distill))} if self._distill else {}
        self._distill = []
        return out


class AmortisedCompressTask(CompressTask):
    """MOF amortised (``compress.training = "amortised"``): the compressor's weights are the meta
    level. Each batch first moves them one Adam step along the hypergradient of the whole-video
    loss (``mof.meta_frames`` of the N frames, uncropped) through one virtual model step
    (:func:`mofkit.bilevel.amortised.amortised_hypergradient`, ``mof.alpha``, ``mof.hypergrad``);
    then the model trains on the compressed frames, the compressor fixed."""

    name = "compress-amortised"

    def __init__(self, trainer: "Trainer"):
        super().__init__(trainer)
        params = [p for p in trainer.compressor.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=self.cfg.compress.lr)
        self._l1: list[float] = []
        self._l2: list[float] = []

    def step_inputs(self, batch: dict, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        from mofkit.bilevel.amortised import amortised_hypergradient
        from mofkit.data.sampling import sample_from_grid
        from mofkit.device import autocast
        from mofkit.models.loss import contrastive_loss

        tr, m = self.trainer, self.cfg.mof
        if len(batch["index"]) >= 2:  # a contrastive loss needs two videos
            x = tr.preprocess.eval(batch["frames"].to(tr.device))  # (B, N, 3, S, S) uncropped
            whole = x[:, sample_from_grid(x.shape[1], min(m.meta_frames, x.shape[1]), "uniform")]
            was_training = tr.model.training
            tr.model.eval()  # the meta step sees no dropout and changes no weight
            self.optimizer.zero_grad(set_to_none=True)
            res = amortised_hypergradient(tr.model, tr.compressor_net, contrastive_loss,
                                          batch["tokens"].to(tr.device), x, whole, alpha=m.alpha,
                                          method=m.hypergrad, fd_eps=m.fd_eps,
                                          autocast=autocast(tr.device, tr.precision),
                                          chunk=m.meta_chunk)
            tr.model.train(was_training)
            if not bool(res.finite.all()):
                tr.report_nonfinite(batch["index"].numpy()[~res.finite.cpu().numpy()], "hypergradient")
            self.optimizer.step()
            self._l1.append(res.loss_compressed)
            self._l2.append(res.loss_whole)
        return self.compressed(batch, epoch, grad=False), batch["tokens"]

    def epoch_stats(self) -> dict[str, float]:
        out = {"meta_loss_compressed": float(np.mean(self._l1)) if self._l1 else float("nan"),
               "meta_loss_whole": float(np.mean(self._l2)) if self._l2 else float("nan")}
        self._l1, self._l2 = [], []
        return out

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "compressor_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "compressor_optimizer" in state:
            self.optimizer.load_state_dict(state["compressor_optimizer"])


TASKS: dict[str, type[Task]] = {"baseline": BaselineTask, "mof": MOFTask, "mof-batch": MOFBatchTask,
                                "mof-frozen": FrozenBankTask, "compress": CompressTask,
                                "compress-amortised": AmortisedCompressTask}


def task_name(cfg: "Config") -> str:
    """Which task a config trains: ``baseline``, ``mof``, ``mof-batch``, ``mof-frozen``,
    ``compress`` or ``compress-amortised``."""
    if cfg.compress.name is not None:
        from mofkit.compress import COMPRESSORS

        if cfg.mof.enabled:
            raise ValueError("compress.name and mof.enabled are two ways to make the K frames; choose "
                             "one (the compressor's MOF is compress.training='amortised')")

        if cfg.compress.distill < 0:
            raise ValueError(f"compress.distill={cfg.compress.distill}: a weight, 0 or more")
        if cfg.compress.name in COMPRESSORS and COMPRESSORS[cfg.compress.name].learned \
                and cfg.compress.training == "amortised":
            if cfg.compress.distill:
                raise ValueError("compress.distill is a term of the end-to-end loss; MOF amortised "
                                 "(compress.training='amortised') trains the compressor by its "
                                 "hypergradient alone: set compress.distill=0 or training='end_to_end'")
            return "compress-amortised"
        return "compress"
    if not cfg.mof.enabled:
        return "baseline"
    names = {"epoch": "mof", "batch": "mof-batch", "none": "mof-frozen"}
    if cfg.mof.update not in names:
        raise ValueError(f"mof.update={cfg.mof.update!r}: use 'epoch' (one frame update per meta "
                         f"epoch), 'batch' (interleaved with the base steps) or 'none' (a frozen "
                         f"bank, a control)")
    if cfg.mof.meta_chunk < 0:
        raise ValueError(f"mof.meta_chunk={cfg.mof.meta_chunk}: videos per piece of the meta step's "
                         f"N-frame pass, or 0 for the whole meta batch at once")
    if cfg.mof.frame_eps_scale not in EPS_SCALES:
        raise ValueError(f"mof.frame_eps_scale={cfg.mof.frame_eps_scale!r}: use 'row' (frame_eps relative "
                         f"to each video's gradient scale) or 'absolute' (torch's Adam)")
    if cfg.mof.init == "oracle" and not dataset_spec(cfg.data.dataset).timelines:
        raise ValueError("mof.init='oracle' takes frames inside the captioned events, which only the "
                         "synthetic corpus records; use 'uniform' or 'train_crop'")
    return names[cfg.mof.update]


FRAME_STEP_TASKS = ("mof", "mof-batch")  # the tasks whose frames the frame optimiser moves
_FRAME_OPTIMISER_ADDED = ("mof.frame_eps", "mof.frame_eps_scale")  # frame Adam settings added later


# what the amortised compressor reads of the mof section: its meta step's settings, not the bank's
_AMORTISED_READS = ("mof.enabled", "mof.meta_frames", "mof.alpha", "mof.hypergrad", "mof.fd_eps",
                    "mof.meta_chunk")


def settings_not_read(cfg: "Config") -> tuple[str, ...]:
    """Dotted keys of settings that ``cfg``'s task never reads: two runs that differ only in them
    are the same run (a baseline run is not trained again because the frame optimiser gained an
    option or a profile changed MOF's schedule). The bank tasks read every ``mof`` setting but the
    frame optimiser's later options where frames never move; a baseline or end-to-end compressor
    reads none but ``mof.enabled``; the amortised compressor reads its meta step's. Empty for an
    invalid config."""
    try:
        name = task_name(cfg)
    except ValueError:
        return ()
    if name in FRAME_STEP_TASKS:
        return ()
    if name == "mof-frozen":
        return _FRAME_OPTIMISER_ADDED
    reads = _AMORTISED_READS if name == "compress-amortised" else ("mof.enabled",)
    return tuple(k for k in (f"mof.{f.name}" for f in dataclasses.fields(cfg.mof)) if k not in reads)


def task_class(cfg: "Config", name: str | None = None) -> type[Task]:
    """The task class of a config (or the one named: a key of :data:`TASKS`)."""
    name = name or task_name(cfg)
    if name not in TASKS:
        raise ValueError(f"unknown training task {name!r}; tasks: {sorted(TASKS)}")
    return TASKS[name]


def create_task(trainer: "Trainer", name: str | None = None) -> Task:
    """The task of a trainer's config (or the one named).

    Args:
        trainer: the run's trainer.
        name: a key of :data:`TASKS`; None derives it from the config (:func:`task_name`).

    Returns:
        A :class:`Task`.
    """
    return task_class(trainer.cfg, name)(trainer)
