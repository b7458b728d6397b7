"""Figures and widgets: what is drawn equals what was passed, PNGs are written, widgets react."""
from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mofkit.data.sampling import sample_indices, segment_bounds  # noqa: E402
from mofkit.eval.stats import summarise_seeds  # noqa: E402
from mofkit.viz import frames as F  # noqa: E402
from mofkit.viz import plots as P  # noqa: E402
from mofkit.viz import widgets as W  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def coded_frames(t: int, h: int = 8, w: int = 6, offset: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 whose frame i is flat grey level (10 * i + offset) mod 256."""
    return np.stack([np.full((h, w, 3), (10 * i + offset) % 256, np.uint8) for i in range(t)])


def image_arrays(fig: Figure) -> list[np.ndarray]:
    return [np.asarray(im.get_array()) for ax in fig.axes for im in ax.images]


def texts(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [t.get_text() for t in ax.texts]
        parts += [ax.get_title(loc) for loc in ("left", "center", "right")]
        parts += [lab.get_text() for lab in ax.get_xticklabels() + ax.get_yticklabels()]
        parts += [ax.get_xlabel(), ax.get_ylabel()]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# frames


def test_as_frames_accepts_torch_floats_and_a_batch_of_one():
    x = torch.rand(1, 3, 4, 5, 3)  # (B=1, T, H, W, 3) as Preprocessor.to_uint8_image gives for one row
    out = F._as_frames(x)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5, 3)
    np.testing.assert_array_equal(out, np.round(x[0].numpy() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="uniform must be"):
        F._as_frames(np.zeros((3, 4, 5)), "uniform")
    with pytest.raises(ValueError, match="not an image on the \\[0, 1\\] scale"):
        F._as_frames(np.full((2, 4, 4, 3), 2.0))  # e.g. normalised model input
    # a learned frame a little outside [0, 1] is clipped to draw, kept to measure
    x = np.array([-0.1, 0.5, 1.2], np.float32).reshape(1, 1, 1, 3)
    assert F._as_frames(x).ravel().tolist() == [0, 128, 255]
    np.testing.assert_allclose(F._levels(x).ravel(), [-25.5, 127.5, 306.0], rtol=1e-6)


def test_changes_below_one_grey_level_are_measured_and_scaled():
    """Compressed frames that moved by a quarter grey level: not "mean 0.0" on a black map."""
    u = coded_frames(4, h=6, w=6).astype(np.float32) / 255
    c = u.copy()
    c[:, :, 3:, :] += 0.25 / 255  # a quarter grey level on the right half: mean 0.125
    fig = F.compressed_vs_uniform(u, c)
    diff = np.ma.filled(image_arrays(fig)[2], np.nan)
    np.testing.assert_allclose(diff[:, [3, 4, 5]], 0.25, rtol=1e-3)
    assert fig.axes[-2].images[0].get_clim() == pytest.approx((0, 0.25), rel=1e-3)
    assert "mean 0.12" in texts(fig)
    snaps = np.stack([u, c, c + 0.5 / 255])  # (E, K, H, W, 3)
    curve = F.frames_over_epochs(snaps).axes[-1].lines[-1].get_ydata()
    np.testing.assert_allclose(curve, [0, 0.125, 0.625], rtol=1e-3, atol=1e-6)
    png = W.render_explorer_view(u[0], c[0])
    assert png[:8] == PNG_MAGIC
    fig = W.static_explorer_figure({"v": snaps})
    assert fig.axes[-1].get_ylim()[1] == pytest.approx(0.75, rel=1e-3)  # colorbar: the largest change


def test_frame_strip_draws_the_frames_side_by_side():
    f = coded_frames(4)
    ax = F.frame_strip(torch.from_numpy(f), titles=["a", "b", "c", "d"], gap=2)
    (img,) = image_arrays(ax.figure)
    assert img.shape == (8, 4 * 6 + 3 * 2, 3)
    for i in range(4):
        np.testing.assert_array_equal(img[:, i * 8:i * 8 + 6], f[i])
    assert (img[:, 6:8] == 255).all()  # white gap
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="3 labels for 4 frames"):
        F.frame_strip(f, titles=["a", "b", "c"])


def test_video_strips_one_image_per_video_with_caption_and_picked_frames():
    items = [(coded_frames(12), "a red circle moves left"), (coded_frames(3, offset=1), "short one"),
             (coded_frames(5), "with indices", [0, 7, 14, 21, 28])]
    fig = F.video_strips(items, max_frames=5, title="three videos")
    imgs = image_arrays(fig)
    assert len(imgs) == 3
    assert imgs[0].shape[1] == 5 * 6 + 4 * 2 and imgs[1].shape[1] == 3 * 6 + 2 * 2
    # evenly picked frames keep the first and last: grey levels 0 and 110
    assert imgs[0][0, 0, 0] == 0 and imgs[0][0, -1, 0] == 110
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes]
    assert ticks[0][0] == "0" and ticks[0][-1] == "11" and ticks[2] == ["0", "7", "14", "21", "28"]
    body = texts(fig)
    for caption in ("a red circle moves left", "short one", "with indices", "three videos"):
        assert caption in body


def test_search_results_shows_top_k_with_scores():
    ranked = [(coded_frames(4), f"video{i}: caption {i}", 0.9 - 0.1 * i) for i in range(4)]
    fig = F.search_results("a blue star flashes", ranked, k=2)
    assert len(image_arrays(fig)) == 2
    body = texts(fig)
    assert "a blue star flashes" in body and "score 0.900" in body and "score 0.800" in body
    assert "video2" not in body


def _dark_cells(ax) -> dict[float, list[int]]:
    """Row y -> frame indices of the filled cells of a sampling row."""
    dark = mcolors.to_rgba("#1f4e79")
    rows: dict[float, list[int]] = {}
    for p in ax.patches:
        if np.allclose(p.get_facecolor(), dark):
            y = round(p.get_y() + p.get_height() / 2, 3)
            rows.setdefault(y, []).append(int(round(p.get_x() + p.get_width() / 2)))
    return {y: sorted(v) for y, v in rows.items()}


def test_sampling_timeline_marks_the_sampled_frames_and_the_missed_events():
    events = [{"start": 0, "end": 2, "label": "white cross flashes", "decisive": True},
              {"start": 2, "end": 32, "colour": "orange", "shape": "circle", "action": "grows"}]
    ax = F.sampling_timeline(32, 4, events=events, modes=("uniform", "rand"), rng_seed=3)
    cells = _dark_cells(ax)
    assert cells[0.0] == sample_indices(32, 4).tolist()
    assert cells[-1.0] == sorted(sample_indices(32, 4, "rand", rng=np.random.default_rng(3)).tolist())
    starts, _ = segment_bounds(32, 4)
    boundaries = sorted(line.get_xdata()[0] for line in ax.lines)
    assert boundaries == [*(starts - 0.5).tolist(), 31.5]
    labels = [t.get_text() for t in ax.texts]
    assert labels[0] == "white cross flashes\nmissed by uniform"  # uniform picks 3, 11, 19, 27
    assert labels[1] == "orange circle grows"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["uniform", "rand (seed 3)", "events"]
    # K = 16 hits the 2-frame flash: nothing is missed
    ax = F.sampling_timeline(32, 16, events=events)
    assert not any("missed" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="events\\[0\\]"):
        F.sampling_timeline(10, 4, events=[{"start": 8, "end": 12, "label": "late"}])


def test_compressed_vs_uniform_difference_maps_are_mean_abs_rgb_differences():
    u = coded_frames(4, h=6, w=6)
    c = u.copy()
    c[:, :, 3:, 0] += 30  # red +30 on the right half: mean over RGB is 10
    fig = F.compressed_vs_uniform(u, c, whole=coded_frames(32, h=6, w=6), caption="a caption")
    imgs = image_arrays(fig)
    assert len(imgs) == 4  # whole, uniform, compressed, differences
    assert imgs[0].shape[1] == 16 * 6 + 15 * 2  # the whole video is cut to 16 frames
    np.testing.assert_array_equal(imgs[1], F._mosaic(u))
    np.testing.assert_array_equal(imgs[2], F._mosaic(c))
    diff = np.ma.filled(imgs[3], np.nan)
    assert np.allclose(diff[:, [0, 1, 2, 8, 9, 10]], 0)
    assert np.allclose(diff[:, [3, 4, 5, 11, 12, 13]], 10)
    assert np.isnan(diff[:, 6:8]).all()  # gaps
    assert any(ax.get_ylabel() == "grey levels" for ax in fig.axes)  # the colorbar
    assert "a caption" in texts(fig) and "mean 5.0" in texts(fig)
    fig = F.compressed_vs_uniform(u, c, diff_scale=50)
    assert len(image_arrays(fig)) == 3
    assert fig.axes[-2].images[0].get_clim() == (0, 50)
    with pytest.raises(ValueError, match="same \\(K, H, W, 3\\) shape"):
        F.compressed_vs_uniform(u, c[:3])


def test_frames_over_epochs_grid_and_change_curve():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 256, (5, 3, 6, 6, 3), dtype=np.uint8)  # (E, K, H, W, 3)
    fig = F.frames_over_epochs(s, epochs=[0, 2, 4, 6, 8])
    assert len(image_arrays(fig)) == 3  # one row per frame
    np.testing.assert_array_equal(image_arrays(fig)[1], F._mosaic(s[:, 1]))
    plot = fig.axes[-1]
    mean_line = plot.lines[-1]
    expected = np.abs(s.astype(float) - s[:1].astype(float)).mean(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(mean_line.get_ydata(), expected, rtol=1e-5)
    np.testing.assert_array_equal(mean_line.get_xdata(), [0, 2, 4, 6, 8])
    assert len(plot.lines) == 4  # one per frame and the mean
    fig = F.frames_over_epochs(s, frame=2, max_epochs=3)
    (img,) = image_arrays(fig)
    np.testing.assert_array_equal(img, F._mosaic(s[[0, 2, 4], 2]))
    assert len(fig.axes[-1].lines) == 1
    with pytest.raises(ValueError, match="frame=3"):
        F.frames_over_epochs(s, frame=3)


def test_save_figure_writes_a_png_and_closes_pyplot_figures(tmp_path):
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = F.save_figure(fig, tmp_path / "a" / "b" / "fig.png")
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000
    assert not plt.fignum_exists(fig.number)
    out = P.save_figure(F.frame_strip(coded_frames(3)).figure, tmp_path / "strip.png", dpi=60)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_ipython_shows_plain_figures_as_png(monkeypatch):
    ipython = pytest.importorskip("IPython")
    from types import SimpleNamespace

    from IPython.core.formatters import DisplayFormatter

    shell = SimpleNamespace(display_formatter=DisplayFormatter())
    monkeypatch.setattr(ipython, "get_ipython", lambda: shell)
    fig = F.frame_strip(coded_frames(2)).figure
    assert "image/png" not in shell.display_formatter.format(fig)[0]
    F._ipython_png_support()
    png = shell.display_formatter.format(fig)[0]["image/png"]
    png = base64.b64decode(png) if isinstance(png, str) else png  # IPython >= 8 sends base64 text
    assert png[:8] == PNG_MAGIC


# ---------------------------------------------------------------------------------------------
# plots


def _history(n: int = 4, mof: bool = True, offset: float = 0.0) -> list[dict]:
    rows = []
    for e in range(1, n + 1):
        r = {"epoch": e, "train_loss": 2.0 / e + offset, "t2v_R1": 10.0 * e, "t2v_R5": 20.0 * e,
             "t2v_R10": 25.0 * e, "epoch_seconds": 3.0}
        if mof:
            r.update(meta_loss_compressed=1.5 / e, meta_loss_whole=1.8 / e if e % 2 == 0 else math.nan,
                     frames_mean_abs_change=0.5 * e)
        rows.append(r)
    return rows


def test_training_curves_plots_the_logged_values():
    fig = P.training_curves(pd.DataFrame(_history(mof=False)), title="uniform")
    assert len(fig.axes) == 2
    loss, rec = fig.axes
    (line,) = loss.lines
    np.testing.assert_allclose(line.get_ydata(), [2.0, 1.0, 2 / 3, 0.5])
    assert [ln.get_label() for ln in rec.lines] == ["R@1", "R@5", "R@10"]
    np.testing.assert_allclose(rec.lines[0].get_ydata(), [10, 20, 30, 40])

    fig = P.training_curves(_history(mof=True))
    assert len(fig.axes) == 3  # frame change panel
    loss = fig.axes[0]
    labels = [ln.get_label() for ln in loss.lines]
    assert labels == ["base loss (training frames)", "L1 (compressed frames)",
                      "L2 (whole video, after virtual step)"]
    np.testing.assert_array_equal(loss.lines[2].get_xdata(), [2, 4])  # NaN epochs skipped
    np.testing.assert_allclose(fig.axes[2].lines[0].get_ydata(), [0.5, 1.0, 1.5, 2.0])

    # a dict of columns is one run; a dict of runs gives one colour per run and a run legend
    fig = P.training_curves({"epoch": [1, 2], "train_loss": [1.0, 0.5]})
    assert len(fig.axes[0].lines) == 1
    fig = P.training_curves({"uniform": _history(mof=False), "MOF": pd.DataFrame(_history())})
    assert len(fig.axes[0].lines) == 1 + 3
    assert {ln.get_color() for ln in fig.axes[1].lines} == {"C0", "C1"}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["uniform", "MOF"]


def _seed_table() -> pd.DataFrame:
    rows = []
    for seed, noise in enumerate((-1.0, 0.0, 1.0)):
        for k in (16, 2, 4):
            rows.append({"method": "uniform", "K": k, "seed": seed, "gflops": 8.8 * k + 6.0,
                         "t2v_R1": 10.0 * math.log2(k) + noise, "t2v_R5": 50.0 + noise,
                         "train_seconds": 10.0 * k})
        rows.append({"method": "MOF", "K": 4, "seed": seed, "gflops": 8.8 * 4 + 6.0,
                     "t2v_R1": 30.0 + 2 * noise, "t2v_R5": 60.0, "train_seconds": 100.0})
    return pd.DataFrame(rows)


def test_ablation_table_mean_pm_std_over_seeds():
    df = _seed_table()
    table = P.ablation_table(df, ["method", "K"], metrics=("t2v_R1", "t2v_R5"))
    assert table.index.names == ["method", "K"]
    assert table.loc[("uniform", 4), "t2v_R1"] == "20.0 ± 1.0"  # 19, 20, 21: sample std 1
    assert table.loc[("MOF", 4), "t2v_R1"] == "30.0 ± 2.0"
    assert table.loc[("MOF", 4), "t2v_R5"] == "60.0 ± 0.0"
    assert table.loc[("uniform", 2), "seeds"] == 3
    one = P.ablation_table(df[df.seed == 0], "method", metrics=("t2v_R1",), decimals=2)
    assert one.loc["MOF", "t2v_R1"] == "28.00"  # one seed: no spread
    with pytest.raises(KeyError, match="t2v_R10"):
        P.ablation_table(df, "method", metrics=("t2v_R10",))

    s = summarise_seeds(df, ["method", "K"], ["t2v_R1"])
    row = s[(s.method == "uniform") & (s.K == 16)].iloc[0]
    assert row["t2v_R1"] == pytest.approx(40.0) and row["t2v_R1_std"] == pytest.approx(1.0)
    assert row["gflops"] == pytest.approx(8.8 * 16 + 6) and row["seeds"] == 3  # costs come along


def _direction_table() -> pd.DataFrame:
    rows = []
    for seed in range(2):
        for method, k in (("uniform", 4), ("MOF", 4)):
            row = {"method": method, "K": k, "seed": seed, "gflops": 41.24,
                   "train_seconds": 100.0 + seed}
            for d, base in (("t2v", 20.0), ("v2t", 30.0)):
                row.update({f"{d}_R1": base + seed, f"{d}_R5": 50.0, f"{d}_R10": 60.0,
                            f"{d}_MdR": 3.0, f"{d}_MnR": 12.0})
            rows.append(row)
    return pd.DataFrame(rows)


def test_ablation_table_directions_and_headline_markdown():
    df = _direction_table()
    table = P.ablation_table(df, ["method", "K"], directions=("t2v", "v2t"))
    assert list(table.columns) == [f"{d}_{k}" for d in ("t2v", "v2t")
                                   for k in ("R1", "R5", "R10", "MdR", "MnR")] + ["seeds"]
    assert table.loc[("MOF", 4), "v2t_R1"] == "30.5 ± 0.7"  # 30, 31: sample std 0.707
    text = P.headline_markdown(df, by=("method", "K"), directions=("t2v",))
    lines = text.splitlines()
    assert lines[0] == ("| method / K | t2v R@1 | t2v R@5 | t2v R@10 | t2v MdR | t2v MnR "
                        "| GFLOPs / video | train s | seeds |")
    assert lines[1] == "|" + "---|" * 9
    assert lines[2] == ("| uniform 4 | 20.5 ± 0.7 | 50.0 ± 0.0 | 60.0 ± 0.0 | 3.0 ± 0.0 "
                        "| 12.0 ± 0.0 | 41.2 | 100 | 2 |")
    assert len(lines) == 4


def test_tradeoff_plot_one_line_per_method_from_seed_means():
    fig = P.tradeoff_plot(_seed_table(), title="cost")
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.containers] == ["uniform", "MOF"]
    lines = [c.lines[0] for c in ax.containers]  # the data line of each errorbar
    np.testing.assert_allclose(np.asarray(lines[0].get_xdata(), float),
                               [8.8 * 2 + 6, 8.8 * 4 + 6, 8.8 * 16 + 6])
    np.testing.assert_allclose(np.asarray(lines[0].get_ydata(), float), [10.0, 20.0, 40.0])  # by cost
    np.testing.assert_allclose(np.asarray(lines[1].get_ydata(), float), [30.0])
    notes = sorted(t.get_text() for t in ax.texts)
    assert notes == ["K=16", "K=2", "K=4", "K=4"]
    assert all(c.has_yerr for c in ax.containers)  # spread over seeds
    assert ax.get_xlabel() == "inference GFLOPs per video"
    # precomputed spread column, the way notebook 05 calls it
    s = summarise_seeds(_seed_table(), ["method", "K"])
    fig = P.tradeoff_plot(s, err_col="t2v_R1_std")
    seg = fig.axes[0].containers[1].lines[2][0].get_segments()[0]  # MOF's error bar
    assert seg[1][1] - seg[0][1] == pytest.approx(4.0)  # +/- 2


def test_ablation_plot_points_are_means_in_numeric_order():
    df = _seed_table()
    uni = df[df.method == "uniform"]
    fig = P.ablation_plot(uni, x="K", y="t2v_R1")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "4", "16"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [10.0, 20.0, 40.0])
    fig = P.ablation_plot(df, x="K", hue="method", kind="bar")
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches if p.get_height() > 0)
    assert heights == [10.0, 20.0, 30.0, 40.0]
    with pytest.raises(ValueError, match="kind"):
        P.ablation_plot(df, x="K", kind="violin")
    # settings of mixed types (as an ablation's "value" column) keep their order of appearance
    mixed = pd.DataFrame({"value": ["N=8", 0.5, "N=8", 0.5, "exact"],
                          "t2v_R1": [1.0, 2.0, 3.0, 4.0, 5.0]})
    ax = P.ablation_plot(mixed, x="value").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["N=8", "0.5", "exact"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [2.0, 3.0, 5.0])


def test_efficiency_bars_heights_are_means():
    fig = P.efficiency_bars(_seed_table(), x="method", y="train_seconds")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([(20 + 40 + 160) / 3, 100.0])
    assert [t.get_text() for t in ax.texts] == ["73.3", "100.0"]
    assert ax.get_ylabel() == "training time (s)"


# ---------------------------------------------------------------------------------------------
# widgets


def _snapshots() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (4, 3, 8, 8, 3), dtype=np.uint8)  # (E, K, H, W, 3)
    b = rng.integers(0, 256, (2, 2, 8, 8, 3), dtype=np.uint8)  # fewer epochs and frames
    return {"video0": a, "video7": b}


def test_render_explorer_view_is_a_png():
    png = W.render_explorer_view(coded_frames(1)[0], coded_frames(2)[1], title="t")
    assert png[:8] == PNG_MAGIC
    img = matplotlib.image.imread(io.BytesIO(png))
    assert img.ndim == 3 and img.shape[1] > img.shape[0]


def test_frame_explorer_updates_the_image_when_controls_move():
    pytest.importorskip("ipywidgets")
    import ipywidgets

    snaps = _snapshots()
    box = W.frame_explorer(snaps, captions={"video0": "a red <circle>"}, epochs=None)
    assert isinstance(box, ipywidgets.VBox)
    video, epoch, readout, frame = box.children[0].children
    caption, image = box.children[1], box.children[2]
    assert isinstance(image, ipywidgets.Image) and image.value[:8] == PNG_MAGIC
    assert epoch.value == 3 and epoch.max == 3 and frame.max == 2
    assert "&lt;circle&gt;" in caption.value
    last = image.value
    epoch.value = 1
    assert image.value != last and "(snapshot 2/4)" in readout.value
    last = image.value
    frame.value = 2
    assert image.value != last
    video.value = "video7"  # its sliders shrink to its 2 epochs and 2 frames
    assert epoch.max == 1 and frame.max == 1 and "video7" in caption.value


def test_frame_explorer_checks_its_inputs():
    pytest.importorskip("ipywidgets")
    with pytest.raises(ValueError, match="no snapshots"):
        W.frame_explorer({})
    with pytest.raises(ValueError, match="epochs has 2 labels"):
        W.frame_explorer(_snapshots(), epochs=[0, 1])
    with pytest.raises(ValueError, match="uniform frames of video0"):
        W.frame_explorer(_snapshots(), uniform={"video0": np.zeros((2, 8, 8, 3), np.uint8)})


def test_static_explorer_figure_rows_start_epochs_and_difference():
    snaps = _snapshots()
    uni = {"video0": snaps["video0"][0, :, ::-1].copy()}
    fig = W.static_explorer_figure(snaps, uniform=uni, captions={"video7": "seven"}, frame=1,
                                   max_snapshots=2)
    imgs = image_arrays(fig)
    assert len(imgs) == 4  # per video: frames and a difference map
    # video0: its uniform frame, then epochs 0 and 3
    u1, s1 = uni["video0"][1], snaps["video0"][:, 1]
    np.testing.assert_array_equal(imgs[0], F._mosaic(np.stack([u1, s1[0], s1[3]])))
    np.testing.assert_allclose(np.asarray(imgs[1]), F._diff_map(s1[3], u1))
    # video7 has no uniform frames: snapshot 0 is the start and is not repeated
    np.testing.assert_array_equal(imgs[2], F._mosaic(snaps["video7"][[0, 1], 1]))
    body = texts(fig)
    assert "seven" in body and "uniform" in body and "ep 3" in body
    # uniform frames equal to snapshot 0 (as notebook 04 passes them) are not shown twice
    fig = W.static_explorer_figure(snaps, uniform={v: x[0] for v, x in snaps.items()}, max_snapshots=2)
    np.testing.assert_array_equal(image_arrays(fig)[0], F._mosaic(snaps["video0"][[0, 1, 3], 0]))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["uniform", "after ep 1", "after ep 3"]


def test_gaps_scale_with_large_frames():
    big = np.zeros((3, 20, 320, 3), np.uint8)  # MSR-VTT-sized frames shrunk to ~0.8 inch each
    ax = F.frame_strip(big, gap=2)
    (img,) = image_arrays(ax.figure)
    assert img.shape[1] == 3 * 320 + 2 * 10  # 2 px at 64 px width -> 10 px at 320
    assert (img[:, 320:330] == 255).all()
    assert ax.images[0].get_interpolation() == "antialiased"
    assert F.frame_strip(coded_frames(3)).images[0].get_interpolation() == "nearest"


def _compressor_summary() -> pd.DataFrame:
    rows = []
    for corpus in ("static", "camera"):
        for method, k, g, r1, comp in [("uniform K=4", 4, 0.068, 7.0, "none"), ("uniform K=16", 16, 0.27, 12.0, "none"),
                                       ("segment_max", 4, 0.069, 9.0, "segment_max"),
                                       ("slots soft", 4, 0.074, 11.0, "slots")]:
            rows.append({"regime": corpus, "method": method, "K": k, "gflops": g, "t2v_R1": r1, "t2v_R1_sd": 0.5,
                         "seeds": 3, "compressor": comp, "videos_per_s": 30.0 + k})
    return pd.DataFrame(rows)


def test_the_compressor_tradeoff_draws_every_point_at_its_cost(tmp_path):
    from mofkit.viz.tables import update_figures

    summary = _compressor_summary()
    fig = P.compressor_tradeoff(summary, title="t")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["static corpus (seeds per point: 3)",
                                                 "camera corpus (seeds per point: 3)"]
    ax = panels[0]
    drawn = {(round(float(x), 3), float(y)) for line in ax.lines for x, y in zip(*line.get_data())}
    assert {(0.068, 7.0), (0.27, 12.0), (0.069, 9.0), (0.074, 11.0)} <= drawn
    assert ax.get_xscale() == "log"  # K = 4 to 16: a fourfold range
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["uniform K (46-34 videos/s)", "segment_max, 34 videos/s", "slots soft, 34 videos/s"]
    with pytest.raises(ValueError, match="empty"):
        P.compressor_tradeoff(summary.iloc[:0])
    summary.to_csv(tmp_path / "compressors_cpu.csv", index=False)
    summary.iloc[:0].to_csv(tmp_path / "compressors_smoke.csv", index=False)
    (tmp_path / "regimes_cpu.csv").write_text("a\n1\n")
    written = update_figures(sorted(tmp_path.glob("*.csv")))
    assert written == [tmp_path / "compressors_cpu.png"]  # the empty one and other studies: none
    assert written[0].read_bytes()[:8] == PNG_MAGIC


def test_the_compressor_outputs_figure_checks_its_inputs():
    whole, uni = coded_frames(8), coded_frames(2)
    sel = np.full((2, 8), 1 / 8)
    fig = F.compressor_outputs(whole, uni, coded_frames(2, offset=3), selection=sel, positions=np.arange(8) * 2,
                               uniform_positions=[4, 12], events=[{"start": 2, "end": 5, "label": "flash"}],
                               coverage=[{"uniform": True, "compressor": False, "slot": None}])
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("flash" in t and "uniform sees it" in t and "compressor misses it" in t for t in texts)
    assert len(F.compressor_outputs(whole, uni, uni).axes) == 3  # no selection: no timeline
    with pytest.raises(ValueError, match="selection must be"):
        F.compressor_outputs(whole, uni, uni, selection=sel[:, :4])
    with pytest.raises(ValueError, match="must both be"):
        F.compressor_outputs(whole, uni, coded_frames(3))
    with pytest.raises(ValueError, match="coverage has 0 entries for 1 events"):
        F.compressor_outputs(whole, uni, uni, selection=sel, events=[{"start": 0, "end": 1}], coverage=[])


def test_snapshots_are_labelled_as_the_training_log_counts():
    """Snapshot 0 is saved before training; snapshot e after the log's "epoch e/E"."""
    assert F.epoch_label(0) == "start" and F.epoch_label(2) == "after ep 2"
    s = np.random.default_rng(0).integers(0, 256, (3, 2, 6, 6, 3), dtype=np.uint8)
    fig = F.frames_over_epochs(s, epochs=[0, 1, 2])
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["start", "after ep 1", "after ep 2"]
    plot = fig.axes[-1]
    assert plot.lines[-1].get_linestyle() == "--"  # the mean, dashed, under each frame's line
    assert all(line.get_zorder() > plot.lines[-1].get_zorder() for line in plot.lines[:-1])
