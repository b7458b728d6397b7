"""Text-to-video search with a trained run: over a dataset split or a folder of one's own videos.

The run's model is rebuilt from its saved config and checkpoint (``mofkit.models.create_from_config``),
every video is decoded at the run's K uniform frames and encoded once in batches
(``mofkit.eval.encode``), and a query is one text embedding against all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

from mofkit.config import Config


class SearchIndex:
    """Text-to-video search with a trained run over a split or a folder of the user's videos.

    Every video is decoded at the run's K uniform frames and encoded once, in batches, with the
    run's own model (built from its saved config and checkpoint, so the temporal head and a fixed
    temperature are the ones it was trained with). Videos that cannot be read are skipped, and why
    is kept in :attr:`skipped` and printed.

    Args:
        run_dir: a trained run's folder (``checkpoint.pt``, ``config.json``).
        folder: a folder of videos (searched recursively), a single video file, or None for the
            ``dataset``; ``~`` is expanded. Videos are named by their path relative to the folder,
            extension included (``bikes.mp4`` and ``bikes.mkv`` are two videos).
        dataset: the videos to search when ``folder`` is None (e.g. the test split); labelled by
            their first caption.
        device: where the model runs (``auto``, ``cpu``, ``cuda``).
        batch_size: videos per forward pass.
        progress: a progress bar while indexing.

    Raises:
        FileNotFoundError: the folder or file does not exist, or holds no video files.
        ValueError: ``folder`` is a file that is not a video, or no video could be read.
    """

    def __init__(self, run_dir: str | Path, folder: str | Path | None = None, *, dataset=None,
                 device: str = "auto", batch_size: int = 32, progress: bool = True):
        import torch
        from tqdm.auto import tqdm

        from mofkit.data.preprocess import Preprocessor
        from mofkit.data.scan import find_videos
        from mofkit.data.video import VideoReadError, read_video
        from mofkit.device import get_device
        from mofkit.eval.encode import encode_texts, encode_videos
        from mofkit.models import create_from_config

        ckpt = Path(run_dir) / "checkpoint.pt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt} not found: train the run first")
        saved = Config.from_dict(json.loads((ckpt.parent / "config.json").read_text()))
        saved.model.pretrained = str(ckpt)
        self.device = get_device(device)
        self.bundle = create_from_config(saved.model, self.device)
        self.k = saved.data.num_frames
        self.pre = Preprocessor(self.bundle.image_size, self.bundle.mean, self.bundle.std)
        if folder is None:
            if dataset is None:
                raise ValueError("SearchIndex needs a folder of videos or a dataset to search")
            items = [(r.video_id, r.path, r.captions[0]) for r in dataset.records]
            where = f"{dataset.name}/{dataset.split}"
        else:
            items = [(vid, path, "") for vid, path in find_videos(folder)]
            where = str(Path(folder).expanduser())
        self.ids: list[str] = []
        self.labels: list[str] = []
        self.frames: list[torch.Tensor] = []
        self.skipped: dict[str, str] = {}  # video id -> why it could not be read
        model = self.bundle.model.eval()
        embs = []
        bar = tqdm(total=len(items), desc=f"indexing {where}", unit="video", disable=not progress,
                   dynamic_ncols=True)
        for start in range(0, len(items), batch_size):
            batch = []
            for vid, path, label in items[start:start + batch_size]:
                try:
                    frames, _ = read_video(path, self.k, "uniform", size=saved.data.decode_size,
                                           backend=saved.data.backend)
                except VideoReadError as e:
                    self.skipped[vid] = e.reason
                    continue
                self.ids.append(vid)
                self.labels.append(label)
                self.frames.append(frames)
                batch.append(self.pre.eval(frames))  # (K, 3, S, S): videos may differ in size
            if batch:
                x = torch.stack(batch)  # (B, K, 3, S, S)
                embs.append(encode_videos(model, lambda rows: x[rows], len(batch),
                                          preprocess=lambda f: f, device=self.device,
                                          batch_size=batch_size))
            bar.update(len(items[start:start + batch_size]))
        bar.close()
        if self.skipped and progress:
            print(self.skipped_report())
        if not embs:
            raise ValueError(f"none of the {len(items)} videos in {where} could be read: "
                             f"{self.skipped_report(limit=5)}")
        self.video_emb = torch.cat(embs)  # (V, D)
        self._encode_texts = lambda q: encode_texts(model, self.bundle.tokenizer(q), device=self.device)

    def skipped_report(self, limit: int = 20) -> str:
        """The skipped videos and why, one per line (at most ``limit``)."""
        lines = [f"{len(self.skipped)} video{'s' if len(self.skipped) != 1 else ''} skipped:"]
        lines += [f"  {vid}: {reason}" for vid, reason in list(self.skipped.items())[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)

    def search(self, query: str, k: int = 5) -> list[tuple]:
        """Top-k ``(frames (K, H, W, 3), label, score)`` for a text query."""
        scores = (self._encode_texts([query]) @ self.video_emb.T)[0]
        top = scores.argsort(descending=True)[:k]
        return [(self.frames[i], f"{self.ids[i]}: {self.labels[i]}" if self.labels[i] else self.ids[i],
                 float(scores[i])) for i in top]
