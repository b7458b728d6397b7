"""Command line: ``python -m mofkit <command>`` (also installed as ``mofkit``).

Commands:
    run        the ordered notebooks, headless, into a reports folder (the main job)
    train      one training run (baseline or MOF); works under torchrun
    prepare    the corpus and frame caches a training run reads, built before its processes start
    generate   write the synthetic corpus
    study      a named grid of runs into one table; resumable; the paired studies write their
               summary with confidence intervals
    pretrain   train the towers CLIP-style on synthetic stills (the regime study's pretrained start)
    ceiling    the best t2v R@1 K uniform frames allow on the synthetic corpus
    compare    paired difference of two methods' R@k, seeds paired, bootstrap over queries
    tables     regenerate the README's tables from the committed result files
    scan       the quality table of a folder's videos (PATH) or of a dataset's
    reencode   re-encode a folder of videos (SRC) into DST at a low frame rate and size, checked
    index      embed a folder of videos once with a trained run (on disk, incremental)
    search     text search over an index built by ``index``
Config overrides use dotted keys: ``--set train.epochs=5 --set mof.enabled=true``.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path
from typing import Any


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str] | None, flag: str = "--set") -> dict[str, Any]:
    """``["train.epochs=5", "mof.enabled=true"]`` -> ``{"train.epochs": 5, "mof.enabled": True}``."""
    out: dict[str, Any] = {}
    example = "train.epochs=5" if flag == "--set" else "VIDEO_FOLDER=~/videos"
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"{flag} expects NAME=VALUE (e.g. {example}), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _cmd_run(args) -> int:
    from mofkit.runner import NotebookFailed, run_notebooks

    params = parse_overrides(args.param, flag="-p")
    if "VIDEO_FOLDER" in params and isinstance(params["VIDEO_FOLDER"], str):
        params["VIDEO_FOLDER"] = str(Path(params["VIDEO_FOLDER"]).expanduser())
    try:
        run_notebooks(args.profile, overrides=parse_overrides(args.set), out_dir=args.out_dir,
                      device=args.device, seed=args.seed, fresh=args.fresh, only=args.only,
                      reports_dir=args.reports_dir, params=params)
    except NotebookFailed as e:
        print(f"\nFAILED: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"mofkit run: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_train(args) -> int:
    from mofkit.config import get_config
    from mofkit.train.loop import train

    overrides = parse_overrides(args.set)
    if args.out_dir:
        overrides["out_dir"] = args.out_dir
    if args.device:
        overrides["device"] = args.device
    cfg = get_config(args.profile, overrides)
    from mofkit.train.checkpoint import ResumeError

    try:
        result = train(cfg, resume=not args.fresh, stop_after_epoch=args.stop_after_epoch)
    except ResumeError as e:
        print(f"mofkit train: {e}", file=sys.stderr)
        return 2
    if result.is_main and result.final:
        from mofkit.eval.metrics import format_metrics

        print("t2v", format_metrics(result.final["t2v"]))
        print("v2t", format_metrics(result.final["v2t"]))
    return 0


def _cmd_prepare(args) -> int:
    from mofkit.config import get_config
    from mofkit.train.data import prepare_caches
    from mofkit.train.tasks import task_class

    cfg = get_config(args.profile, parse_overrides(args.set))
    try:
        train, test, caches = prepare_caches(cfg, task_class(cfg).data_needs(cfg), progress=True)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"mofkit prepare: {e}", file=sys.stderr)
        return 2
    print(f"{len(train)} training and {len(test)} test videos of {cfg.data.dataset} ({cfg.data.root})")
    for name, cache in caches.items():
        print(f"{name}: {cache.directory}")
    return 0


def _cmd_generate(args) -> int:
    from mofkit.config import get_config
    from mofkit.data.synthetic import ensure_corpus, generate_corpus

    cfg = get_config(args.profile, parse_overrides(args.set))
    root = args.root or cfg.data.root
    if args.force:
        generate_corpus(root, cfg.synthetic, overwrite=True)
    else:
        ensure_corpus(root, cfg.synthetic)
    print(root)
    return 0


def _cmd_scan(args) -> int:
    if args.path is not None:
        return _scan_path(args)
    from mofkit.config import get_config
    from mofkit.data.datasets import load_dataset
    from mofkit.data.scan import scan_dataset

    cfg = get_config(args.profile, parse_overrides(args.set))
    ds = load_dataset(cfg.data.dataset, cfg.data.root, args.split, video_dir=cfg.data.video_dir,
                      missing="skip")
    df = scan_dataset(ds, backend=args.backend or cfg.data.backend)
    print(df.to_string(max_rows=args.rows))
    print(f"\n{int(df.readable.sum())}/{len(df)} readable")
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"table written to {args.csv}")
    return 0


def _scan_path(args) -> int:
    """``mofkit scan PATH``: every video file under a folder (or one file), as a table and a CSV."""
    from pathlib import Path

    import pandas as pd

    from mofkit.data.scan import scan_folder
    from mofkit.data.video import available_backends

    backend = args.backend or (available_backends() or ["pyav"])[0]
    try:
        df = scan_folder(args.path, backend=backend, progress=sys.stderr.isatty())
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:  # from find_videos: no such
        print(f"mofkit scan: {e}", file=sys.stderr)  # folder, not a video, no videos: one line
        return 2
    root = Path(args.path).expanduser()
    name = (root.stem if root.is_file() else root.resolve().name) or "scan"
    csv = Path(args.csv) if args.csv else Path.cwd() / f"{name}_scan.csv"
    df.to_csv(csv, index=False)

    def cell(v, fmt="{}") -> str:
        return "" if v is None or pd.isna(v) else fmt.format(v)

    header = ["video", "frames", "fps", "seconds", "size", "status"]
    rows = [[r.video_id, cell(r.num_frames), cell(r.fps, "{:.2f}"), cell(r.duration, "{:.2f}"),
             f"{r.width}x{r.height}" if not pd.isna(r.width) else "",
             (r.note or "ok") if r.readable else r.error] for r in df.itertuples()]
    shown = rows if args.rows is None or len(rows) <= args.rows else rows[:args.rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *shown)]
    right = {1, 2, 3}  # numbers
    for line in [header, *shown]:
        print("  ".join(str(x).rjust(w) if i in right else str(x).ljust(w)
                        for i, (x, w) in enumerate(zip(line, widths))).rstrip())
    if len(shown) < len(rows):
        print(f"... {len(rows) - len(shown)} more rows in the CSV")
    n_ok, n_cut = int(df.readable.sum()), int(df.truncated.fillna(False).sum())
    cut = f", {n_cut} truncated" if n_cut else ""
    print(f"\n{n_ok}/{len(df)} readable{cut} ({backend}); table written to {csv}")
    return 0


def _cmd_reencode(args) -> int:
    """``mofkit reencode SRC DST``: every video under SRC, re-encoded and checked, into DST."""
    from mofkit.data.reencode import ReencodeSettings, reencode_folder
    from mofkit.data.video import available_backends

    try:
        settings = ReencodeSettings(fps=args.fps or None, short_side=args.short_side or None,
                                    crf=args.crf, preset=args.preset)
        backend = args.backend or (available_backends() or ["pyav"])[0]
        report = reencode_folder(args.src, args.dst, settings, workers=args.workers, backend=backend,
                                 progress=sys.stderr.isatty())
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"mofkit reencode: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_index(args) -> int:
    """``mofkit index FOLDER --run RUN``: embed the folder's videos (new or changed ones only)."""
    from mofkit.eval.index import IndexMismatchError, build_index

    try:
        report = build_index(args.folder, args.run, args.out, device=args.device,
                             batch_size=args.batch_size, progress=sys.stderr.isatty(),
                             workers=args.workers)
    except IndexMismatchError as e:
        print(f"mofkit index: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        print(f"mofkit index: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


def _cmd_search(args) -> int:
    """``mofkit search INDEX "query"``: the best matches, one per line."""
    from mofkit.eval.index import IndexMismatchError, VideoIndex

    try:
        index = VideoIndex(args.index, args.run, device=args.device)
    except IndexMismatchError as e:
        print(f"mofkit search: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        print(f"mofkit search: {e}", file=sys.stderr)
        return 2
    for rank, hit in enumerate(index.search(args.query, k=args.k), 1):
        label = f"  ({hit.label})" if hit.label else ""
        print(f"{rank:3d}  {hit.score:+.3f}  {hit.video_id}{label}  {hit.path}")
    return 0


def _cmd_study(args) -> int:
    from mofkit.config import get_config
    from mofkit.lab.grids import STUDIES, get_study
    from mofkit.lab.runner import run_study
    from mofkit.viz.plots import headline_markdown
    from mofkit.viz.tables import paired_markdown, update_figures

    if args.name not in STUDIES:
        print(f"mofkit study: unknown study {args.name!r}; studies: {', '.join(STUDIES)}",
              file=sys.stderr)
        return 2
    cfg = get_config(args.profile, parse_overrides(args.set))
    out = Path(args.out_dir or f"runs/{args.profile}")
    keep = None if args.no_keep else True
    study = get_study(cfg, args.name, out)
    labels = {s.get("label") for s in study.settings}
    unknown = sorted(set(args.train_only or ()) - labels)
    if unknown:
        print(f"mofkit study: --train-only {', '.join(unknown)}: no such row in {args.name}; its rows: "
              f"{', '.join(sorted(map(str, labels)))}", file=sys.stderr)
        return 2
    table = run_study(cfg, args.name, out, keep=keep, train_missing=not args.read_only,
                      train_labels=args.train_only)
    if not study.keep:
        by = ("ablation", "value") if "ablation" in table else ("method", "K")
        print(f"\n{args.name}: {len(table)} runs, table {out / study.folder / 'results.csv'}\n")
        print(headline_markdown(table, by=by))
        return 0
    summary = study.summarise(cfg, table)
    results = Path(args.results or cfg.study.results_dir or out)
    results.mkdir(parents=True, exist_ok=True)
    csv = results / f"{args.name}_{cfg.profile}.csv"
    summary.to_csv(csv, index=False)
    print(f"\n{args.name}: {len(table)} runs; summary {csv}\n")
    print(paired_markdown(summary, baselines=study.baselines))
    for png in update_figures([csv]):  # the studies with a figure of their own (compressors)
        print(f"figure {png}")
    return 0


def _cmd_pretrain(args) -> int:
    import json

    from mofkit.config import get_config
    from mofkit.train.pretrain import ATTRIBUTES, gate_failures, pretrain_dir, run_pretrain

    cfg = get_config(args.profile, parse_overrides(args.set))
    if args.out_dir:
        cfg.pretrain.dir = args.out_dir
    path = run_pretrain(cfg)
    doc = json.loads((pretrain_dir(cfg) / "pretrain.json").read_text())
    last = doc["history"][-1]
    acc = {a: last[f"{a}_acc"] for a in ATTRIBUTES}
    failed = gate_failures(acc, cfg.pretrain.gate)
    print(f"\ntowers: {path} ({doc['seconds']:.0f} s of training)\n"
          f"zero-shot accuracy on held-out stills: class {last['zero_shot_acc']:.1f} % of "
          f"{doc['classes']}; " + ", ".join(f"{a} {acc[a]:.1f} %" for a in ATTRIBUTES) + "\n"
          + (f"gate ({cfg.pretrain.gate:g} % for each attribute): passed\n" if not failed else
             f"gate ({cfg.pretrain.gate:g} % for each attribute): FAILED for {', '.join(failed)}; train "
             f"longer (--set pretrain.epochs=...) or with the attribute heads (pretrain.attribute_weight)\n")
          + f"start a video run from them: --set model.pretrained={path}")
    return 0 if not failed else 1


def _cmd_ceiling(args) -> int:
    from mofkit.config import get_config
    from mofkit.data.datasets import dataset_spec, load_dataset, prepare_dataset
    from mofkit.data.synthetic import load_timeline
    from mofkit.eval.ceiling import ceiling_table

    cfg = get_config(args.profile, parse_overrides(args.set))
    if not dataset_spec(cfg.data.dataset).timelines:
        print(f"mofkit ceiling: the ceiling needs each video's event timeline, which only the synthetic "
              f"corpus records; profile {args.profile} reads {cfg.data.dataset}", file=sys.stderr)
        return 2
    prepare_dataset(cfg)
    ids = load_dataset(cfg.data.dataset, cfg.data.root, args.split).video_ids
    table = ceiling_table(load_timeline(cfg.data.root), ids, args.k or cfg.study.k_values)
    print(f"information ceiling of t2v R@1 with K uniform frames ({len(ids)} {args.split} videos "
          f"of {cfg.data.root}; see mofkit.eval.ceiling):\n")
    print("| K | information ceiling t2v R@1 (%) | colour-only ceiling t2v R@1 (%) | decisive event seen (%) |\n"
          "|---|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.K} | {r.ceiling_t2v_R1:.1f} | {r.colour_ceiling_t2v_R1:.1f} | {r.decisive_seen:.1f} |")
    print("\ncolour-only: the same ideal scorer seeing only which colours the K frames show, in no order; "
          "a model on that line matches colours and little else")
    return 0


def _cmd_compare(args) -> int:
    from mofkit.eval.stats import paired_difference

    rows = []
    try:
        for direction in args.directions:
            rows.append(paired_difference(args.runs, args.against, direction=direction, k=args.k,
                                          confidence=args.confidence))
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"mofkit compare: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    level = f"{100 * args.confidence:g} %"
    print(f"A: {', '.join(args.runs)}\nB: {', '.join(args.against)}\n")
    print(f"| direction | A R@{args.k} | B R@{args.k} | A - B | {level} CI | seeds | queries | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['direction']} | {r['a']:.2f} | {r['b']:.2f} | {r['diff']:+.2f} | "
              f"[{r['low']:+.2f}, {r['high']:+.2f}] | {r['seeds']} | {r['queries']} | {r['verdict']} |")
    print(f"\npaired over seeds, bootstrap (BCa) over test queries")
    return 0


def _cmd_tables(args) -> int:
    from mofkit.viz.tables import update_figures, update_tables

    try:
        stale = update_tables(args.files, check=args.check)
        if not args.check:  # figures drawn from result files (a PNG's bytes vary by matplotlib)
            for png in update_figures(sorted(Path(args.results).glob("compressors_*.csv"))):
                print(f"{png}: regenerated")
    except (FileNotFoundError, ValueError) as e:
        print(f"mofkit tables: {e}", file=sys.stderr)
        return 2
    for p in stale:
        print(f"{p}: tables {'out of date (run python -m mofkit tables)' if args.check else 'regenerated'}")
    return 1 if stale and args.check else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mofkit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, profile="cpu"):
        sp.add_argument("--profile", default=profile, help="config profile: smoke | cpu | paper")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="config override with a dotted key, repeatable")

    r = sub.add_parser("run", help="run the notebooks in order (the main job)")
    common(r)
    r.add_argument("--fresh", action="store_true", help="start training over (delete OUT_DIR)")
    r.add_argument("--only", nargs="+", metavar="PREFIX", help="notebooks to run, e.g. 00 01")
    r.add_argument("--out-dir", default=None, help="OUT_DIR (default runs/<profile>)")
    r.add_argument("--reports-dir", default=None, help="parent of report folders (default reports/)")
    r.add_argument("--device", default="auto")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="a notebook parameter, passed to the notebooks that declare it, e.g. "
                        "-p VIDEO_FOLDER=~/videos -p 'QUERY=a red star flashes'; repeatable")
    r.set_defaults(fn=_cmd_run)

    t = sub.add_parser("train", help="one training run (torchrun-compatible)")
    common(t)
    t.add_argument("--out-dir", default=None)
    t.add_argument("--device", default=None)
    t.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    t.add_argument("--stop-after-epoch", type=int, default=None, metavar="E",
                   help="checkpoint and stop after epoch E (0-based); run again to resume")
    t.set_defaults(fn=_cmd_train)

    pr = sub.add_parser("prepare", help="build the frame caches a run reads (before torchrun starts "
                                        "its processes; decodes in data.num_workers processes)")
    common(pr)
    pr.set_defaults(fn=_cmd_prepare)

    g = sub.add_parser("generate", help="write the synthetic corpus")
    common(g)
    g.add_argument("--root", default=None, help="target folder (default: the profile's data.root)")
    g.add_argument("--force", action="store_true", help="regenerate even if up to date")
    g.set_defaults(fn=_cmd_generate)

    s = sub.add_parser("scan", help="quality table of a folder's or a dataset's videos",
                       description="With PATH: check every video file under a folder (recursively) "
                                   "or one file, print a table and write it as CSV. Without PATH: "
                                   "the videos of the profile's dataset split.")
    common(s)
    s.add_argument("path", nargs="?", default=None, metavar="PATH",
                   help="folder (recursive) or video file; default: the profile's dataset")
    s.add_argument("--csv", default=None, metavar="FILE",
                   help="where to write the table (default with PATH: <name>_scan.csv here)")
    s.add_argument("--backend", default=None, choices=["decord", "pyav"],
                   help="video decoder (default: pyav when installed, else decord; for a dataset, the profile's)")
    s.add_argument("--split", default="test", help="dataset split (without PATH)")
    s.add_argument("--rows", type=int, default=40, help="table rows printed (the CSV has all)")
    s.set_defaults(fn=_cmd_scan)

    re_ = sub.add_parser("reencode", help="re-encode a folder of videos to a low frame rate and size, "
                                          "checking every output",
                         description="Re-encode every video under SRC (recursively) into DST with the "
                                     "same relative paths as .mp4 (H.264, no audio), as CLIP4Clip's "
                                     "MSR-VTT preparation does; check each output, list failures, and "
                                     "write DST/reencode.json, which training runs record. A second "
                                     "call re-encodes only new or changed files.")
    re_.add_argument("src", help="folder of source videos")
    re_.add_argument("dst", help="output folder (outside SRC)")
    re_.add_argument("--fps", type=float, default=3.0, help="output frame rate (0: keep the source's)")
    re_.add_argument("--short-side", type=int, default=224,
                     help="output short side in pixels, never upscaled (0: keep the size)")
    re_.add_argument("--crf", type=int, default=23, help="x264 quality (lower: better, larger)")
    re_.add_argument("--preset", default="veryfast", help="x264 speed preset")
    re_.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) // 2),
                     help="parallel processes (default half the CPUs)")
    re_.add_argument("--backend", default=None, choices=["decord", "pyav"],
                     help="decoder every output must decode with (default pyav when installed, else decord)")
    re_.set_defaults(fn=_cmd_reencode)

    ix = sub.add_parser("index", help="embed a folder of videos once with a trained run, for search",
                        description="Embed every video under FOLDER with the run's model (its K "
                                    "frames, or its compressor's) into an on-disk index; a second "
                                    "call embeds only new or changed files and drops deleted ones. "
                                    "The index records the model and frame settings, and refuses "
                                    "another run.")
    ix.add_argument("folder", help="folder of videos (recursively) or one video file")
    ix.add_argument("--run", required=True, help="trained run folder (config.json, checkpoint.pt)")
    ix.add_argument("--out", default=None, help="index folder (default FOLDER/.mofkit_index)")
    ix.add_argument("--device", default="auto")
    ix.add_argument("--batch-size", type=int, default=32)
    ix.add_argument("--workers", type=int, default=None,
                    help="decode processes working ahead of the model (default one per core, at "
                         "most 8; 0 decodes in the main process)")
    ix.set_defaults(fn=_cmd_index)

    se = sub.add_parser("search", help="text search over an index built by 'mofkit index'")
    se.add_argument("index", help="index folder, or the video folder holding .mofkit_index")
    se.add_argument("query", help="the text to search for")
    se.add_argument("-k", type=int, default=5, help="results shown")
    se.add_argument("--run", default=None, help="run to embed the query with (default the index's own; "
                                               "its weights must match)")
    se.add_argument("--device", default="auto")
    se.set_defaults(fn=_cmd_search)

    st = sub.add_parser("study", help="a named grid of runs, resumable (an unknown name lists the studies)")
    common(st)
    st.add_argument("name", help="the study (mofkit.lab.grids.STUDIES; an unknown name lists them)")
    st.add_argument("--out-dir", default=None, help="results folder (default runs/<profile>)")
    st.add_argument("--results", default=None,
                    help="where a paired study writes its summary CSV (default study.results_dir)")
    st.add_argument("--no-keep", action="store_true",
                    help="do not keep (or reuse) finished runs' small files under study.keep_dir")
    st.add_argument("--read-only", action="store_true",
                    help="train nothing: summarise the runs that are finished (kept or under --out-dir)")
    st.add_argument("--train-only", nargs="+", default=None, metavar="LABEL",
                    help="train only the settings with these row labels (e.g. uniform rand frozen oracle); "
                         "the others are read where finished")
    st.set_defaults(fn=_cmd_study)

    pt = sub.add_parser("pretrain", help="train the towers CLIP-style on synthetic stills (the "
                                         "pretrained start of the regime study)")
    common(pt)
    pt.add_argument("--out-dir", default=None, help="results folder (default runs/<profile>)")
    pt.set_defaults(fn=_cmd_pretrain)

    ce = sub.add_parser("ceiling", help="the information ceiling of t2v R@1 per K (synthetic corpus)")
    common(ce)
    ce.add_argument("--split", default="test")
    ce.add_argument("--k", type=int, nargs="+", default=None, help="K values (default study.k_values)")
    ce.set_defaults(fn=_cmd_ceiling)

    cp = sub.add_parser("compare", help="paired R@k difference of two methods with a confidence interval")
    cp.add_argument("runs", nargs="+", help="run folders of method A, one per seed")
    cp.add_argument("--against", nargs="+", required=True, help="run folders of method B, the same seeds")
    cp.add_argument("--k", type=int, default=1, help="recall cut-off (default R@1)")
    cp.add_argument("--directions", nargs="+", default=["t2v", "v2t"])
    cp.add_argument("--confidence", type=float, default=0.95)
    cp.set_defaults(fn=_cmd_compare)

    tb = sub.add_parser("tables", help="regenerate the README's tables from docs/results/*.csv")
    tb.add_argument("files", nargs="*", default=["README.md"], help="markdown files (default README.md)")
    tb.add_argument("--check", action="store_true", help="only check that they are up to date")
    tb.add_argument("--results", default="docs/results",
                    help="folder of the result files whose figures are redrawn (compressors_*.csv "
                         "-> compressors_*.png)")
    tb.set_defaults(fn=_cmd_tables)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (KeyError, TypeError) as e:
        text = e.args[0] if e.args else ""
        if isinstance(text, str) and text.startswith("config override"):  # a bad --set
            print(f"mofkit {args.command}: {text}", file=sys.stderr)
            return 2
        raise
