"""Family-aware batching: batches that hold whole hard-negative families, at both levels."""
import json
from pathlib import Path

import numpy as np
import pytest

from mofkit.config import get_config
from mofkit.train import distributed as D
from mofkit.train.batches import epoch_batches


def _families_whole(batches, groups) -> float:
    """Share of indices whose every family member sits in the same batch."""
    whole = 0
    for b in batches:
        for i in b:
            whole += np.all(np.isin(np.flatnonzero(groups == groups[i]), b))
    return whole / sum(len(b) for b in batches)


def test_without_groups_the_order_is_the_plain_seeded_permutation():
    batches = epoch_batches(100, 10, 3, 2, D.DistInfo())
    order = np.random.default_rng([3, 2, 0]).permutation(100)
    assert np.array_equal(np.concatenate(batches), order)


def test_family_batches_keep_families_whole_and_still_shuffle():
    groups = np.repeat(np.arange(25), 4)[np.random.default_rng(0).permutation(100)]
    a = epoch_batches(100, 32, 0, 0, D.DistInfo(), groups=groups)
    assert len(a) == 3 and all(len(b) == 32 for b in a)  # drop_last as without groups
    full = epoch_batches(100, 32, 0, 0, D.DistInfo(), drop_last=False, groups=groups)
    assert sorted(np.concatenate(full).tolist()) == list(range(100))  # every index once
    assert _families_whole(full, groups) == 1.0  # 32 is a multiple of the family size
    random = epoch_batches(100, 32, 0, 0, D.DistInfo(), drop_last=False)
    assert _families_whole(random, groups) < 0.2
    b = epoch_batches(100, 32, 0, 1, D.DistInfo(), groups=groups)
    assert not np.array_equal(np.concatenate(a), np.concatenate(b))  # a new order each epoch
    assert np.array_equal(np.concatenate(a),
                          np.concatenate(epoch_batches(100, 32, 0, 0, D.DistInfo(), groups=groups)))
    # ranks take slices of the same global batches
    ranks = [epoch_batches(100, 32, 0, 0, D.DistInfo(rank=r, world_size=2), groups=groups)
             for r in range(2)]
    assert all(np.array_equal(np.concatenate([ranks[0][j], ranks[1][j]]), a[j]) for j in range(3))
    with pytest.raises(ValueError, match="one label per index"):
        epoch_batches(100, 32, 0, 0, D.DistInfo(), groups=groups[:50])


def test_family_batches_need_a_corpus_with_families():
    from mofkit.train.loop import family_groups

    cfg = get_config("smoke", {"data.dataset": "msrvtt", "train.family_batches": True})
    with pytest.raises(ValueError, match="only the synthetic corpus records"):
        family_groups(cfg, ["video0"])


@pytest.mark.slow
def test_a_mof_run_batches_whole_families_at_both_levels(tmp_path, monkeypatch):
    import mofkit.train.batches as batches_module
    import mofkit.train.loop as loop
    from mofkit.data.synthetic import load_families

    calls = []

    def recording(n, global_batch, seed, epoch, info, **kw):
        out = epoch_batches(n, global_batch, seed, epoch, info, **kw)
        calls.append((kw.get("salt", 0), kw.get("groups"), out))
        return out

    monkeypatch.setattr(batches_module, "epoch_batches", recording)  # where the bank tasks read it
    cfg = get_config("smoke", {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
                               "out_dir": str(tmp_path / "run"), "train.epochs": 2, "mof.enabled": True,
                               "train.family_batches": True})
    result = loop.train(cfg, progress=False)
    assert all(np.isfinite(v) for v in result.final["t2v"].values())
    assert {salt for salt, _, _ in calls} == {0, 1}  # the base epoch and the meta epoch
    assert json.loads((Path(cfg.out_dir) / "config.json").read_text())["train"]["family_batches"] is True
    families = load_families(cfg.data.root)
    for salt, groups, batches in calls:
        assert groups is not None and len(np.unique(groups)) < len(groups)
        size = cfg.train.batch_size if salt == 0 else (cfg.mof.meta_batch_size or cfg.train.batch_size)
        assert size % cfg.synthetic.family_size == 0
        assert _families_whole(batches, groups) == 1.0
        labels, counts = np.unique(groups, return_counts=True)
        assert set(labels) <= set(families.values()) and set(counts) == {cfg.synthetic.family_size}
