"""Which videos each step trains on: every rank's share of an epoch's global batches, whole
hard-negative families kept together where asked. The training loop and the bank placements
(:mod:`mofkit.train.banks`) both cut epochs with these."""
from __future__ import annotations

import math

import numpy as np

from mofkit.config import Config
from mofkit.data.datasets import dataset_spec
from mofkit.train import distributed as D


def epoch_batches(n: int, global_batch: int, seed: int, epoch: int, info: D.DistInfo, *,
                  drop_last: bool = True, salt: int = 0, groups: np.ndarray | None = None,
                  stream: int | None = None) -> list[np.ndarray]:
    """This rank's share of each global batch of one epoch.

    The global order is a permutation drawn from (seed, epoch, salt) (and ``stream``, e.g. a bank
    shard, when given: independent orders of one epoch); it is cut into global batches
    and rank r takes the r-th slice of each, so the concatenation over ranks in rank order is the
    global batch a single process would see.

    ``groups`` (one label per index, e.g. the synthetic corpus's hard-negative families) keeps each
    group together: the groups come in a random order and their members, in a random order, one
    after another, so a batch holds whole groups except where a group straddles a batch boundary.
    """
    rng = np.random.default_rng([seed, epoch, salt] + ([] if stream is None else [stream]))
    if groups is None:
        order = rng.permutation(n)
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}; expected one label per index ({n},)")
        labels, inverse = np.unique(groups, return_inverse=True)
        group_key = rng.permutation(len(labels))[inverse]
        order = np.lexsort((rng.random(n), group_key))  # by group key, then at random within it
    n_batches = n // global_batch if drop_last else math.ceil(n / global_batch)
    local = global_batch // info.world_size
    out = []
    for b in range(n_batches):
        chunk = order[b * global_batch:(b + 1) * global_batch]
        mine = chunk[info.rank * local:(info.rank + 1) * local]
        if len(mine):
            out.append(mine)
    return out


def family_groups(cfg: Config, video_ids) -> np.ndarray:
    """The hard-negative family of each training video, for ``train.family_batches``.

    Only the synthetic corpus records families (``corpus.json``); other datasets get a clear error.
    """
    if not dataset_spec(cfg.data.dataset).families:
        raise ValueError(f"train.family_batches needs hard-negative families, which only the synthetic "
                         f"corpus records; data.dataset={cfg.data.dataset!r} has none. Set "
                         f"train.family_batches=false")
    from mofkit.data.synthetic import load_families

    families = load_families(cfg.data.root)
    missing = [v for v in video_ids if v not in families]
    if missing:
        raise ValueError(f"{len(missing)} training videos (e.g. {missing[0]!r}) have no family in "
                         f"{cfg.data.root}/corpus.json; regenerate the corpus")
    return np.asarray([families[v] for v in video_ids])
