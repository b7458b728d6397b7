"""The notebooks' library (`mofkit.notebook`): sessions, run folders, what a re-run finds."""
import json


def test_notebook_07_rerun_with_another_seed_trains_beside_the_first(tmp_path):
    """Each seed's compressor run has its own folder: the second seed neither stops on the first
    run's checkpoint (ResumeError: train.seed differs) nor overwrites it."""
    from mofkit import notebook as nb

    over = {"data.root": str(tmp_path / "corpus"), "data.cache_dir": str(tmp_path / "cache"),
            "synthetic.n_train": 16, "synthetic.n_test": 8, "train.epochs": 1}
    runs = {}
    for seed in (0, 1):
        s = nb.setup("smoke", over, out_dir=str(tmp_path / "out"), seed=seed, device="cpu")
        nb.ensure(s, "corpus", progress=False)
        nb.train_compressor(s, "segment_max", progress=False)
        runs[seed] = nb.compressor_run(s, "segment_max")
    assert runs[0] != runs[1] and runs[1].name == "seed1"
    seeds = [json.loads((runs[k] / "config.json").read_text())["train"]["seed"] for k in (0, 1)]
    assert seeds == [0, 1]
