"""Run the mOthello study: a grid of training settings x seeds, each cell trained, probed at
every layer beside its controls and baselines, followed over training, and (unless
--no-transfer) put through the transfer protocol; then one summary with intervals and
verdicts (summary.json, report.md, report.html). Rerunning resumes: finished cells are reused.

Examples:
    mothello study --settings naive,anchors:4,anchors:16,unified --seeds 0,1,2 \\
        --languages atomic,atomic --scale cpu --out study/
    mothello study --setting unified --scale tiny --out smoke/         # one cell
    mothello study ... --list-cells                                    # the cells, numbered
    mothello study ... --cell $SLURM_ARRAY_TASK_ID                     # one cell, no summary
    mothello study ... --aggregate-only                                # summary of the cells there
"""
from __future__ import annotations

import argparse

from .lists import add_list_argument

SCALE_NAMES = ("tiny", "cpu", "small", "paper")


# an error naming one setting of --settings is not about --setting
API_NAMES = {"setting": None}

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_list_argument(parser, "--settings", help="training settings: naive, anchors:K (K "
                      "anchored squares), unified (default: naive)")
    parser.add_argument("--setting", help="one setting (the same as --settings with one)")
    add_list_argument(parser, "--seeds", help="seeds, one cell per setting and seed "
                      "(default: 0)")
    parser.add_argument("--seed", type=int, help="one seed (the same as --seeds with one)")
    parser.add_argument("--languages", default="atomic,atomic",
                        help="language spec, e.g. atomic,split:3,compositional "
                             "(default: %(default)s)")
    parser.add_argument("--scale", choices=SCALE_NAMES, default="tiny",
                        help="sizes: tiny (a smoke test), cpu (12 cells in ~1 h on 2 cores), "
                             "small (a GPU), paper (default: %(default)s)")
    parser.add_argument("--out", required=True, help="study directory")
    parser.add_argument("--probe", choices=["mlp", "linear"], default="mlp",
                        help="board probe (default: %(default)s, sized by the scale)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    parser.add_argument("--workers", type=int,
                        help="cells run at once, each in its own process (default: one per "
                             "core on the CPU, one on a GPU)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per cell (default: the cores shared among the "
                             "workers)")
    parser.add_argument("--no-transfer", action="store_true",
                        help="skip the transfer protocol (rerun without this flag to add it)")
    for flag, what in (("--pretrain-steps", "transfer pretraining steps"),
                       ("--finetune-steps", "fine-tuning steps"),
                       ("--finetune-games", "fine-tuning games")):
        parser.add_argument(flag, type=int, help=f"{what} (default: the scale's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cell", type=int, metavar="I",
                      help="run only cell I (0-based, as --list-cells numbers them) in this "
                           "process, without the summary: one job of a job array")
    mode.add_argument("--aggregate-only", action="store_true",
                      help="run no cell: write summary.json and the report from the cells "
                           "in --out")
    mode.add_argument("--list-cells", action="store_true",
                      help="print the grid's cells, numbered, and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _grid(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    from ..errors import ConfigError

    if args.setting is not None and args.settings is not None:
        raise ConfigError("--setting and --settings: expected one of them")
    if args.seed is not None and args.seeds is not None:
        raise ConfigError("--seed and --seeds: expected one of them")
    settings = [args.setting] if args.setting is not None else args.settings or ["naive"]
    if args.seed is not None:
        seeds = [args.seed]
    else:
        seeds = []
        for item in args.seeds or ["0"]:
            if not item.isdigit():
                raise ConfigError(f"--seeds {item!r}: expected non-negative integers")
            seeds.append(int(item))
    return settings, seeds


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from ..cell import SCALES, cell_name
    from ..report import format_interval
    from ..study import aggregate_study, run_study, run_study_cell, study_cells

    settings, seeds = _grid(args)
    if args.list_cells:
        for i, (setting, seed) in enumerate(study_cells(settings, seeds)):
            print(f"{i}\t{cell_name(setting, seed)}\t{setting}\t{seed}")
        return 0
    scale = args.scale
    overrides = {name: getattr(args, name) for name in ("pretrain_steps", "finetune_steps",
                                                        "finetune_games")
                 if getattr(args, name) is not None}
    if overrides:   # a scale of its own, recorded in study.json as "custom" with its sizes
        scale = dataclasses.replace(SCALES[args.scale], **overrides)
    common = dict(settings=settings, seeds=seeds, languages=args.languages, scale=scale,
                  out_dir=args.out, probe=args.probe, device=args.device,
                  transfer=not args.no_transfer)
    if args.cell is not None:
        run_study_cell(cell=args.cell, threads=args.threads, progress=not args.quiet, **common)
        return 0
    if args.aggregate_only:
        summary = aggregate_study(args.out)
    else:
        summary = run_study(workers=args.workers, threads=args.threads,
                            progress=not args.quiet, **common)
    if summary["summary_layer"] is None:
        print(f"no finished cell in {args.out}")
        return 0
    layer = summary["summary_layer"]["layer"]
    if not summary["learned"]["learned"]:
        print("WARNING: the models have not learned the game; the numbers are a smoke test: "
              + "; ".join(summary["learned"]["reasons"][:3]))
    print(f"at layer {layer}: setting, in-distribution, cross-lingual (95% intervals)")
    for name, s in summary["settings"].items():
        at = s["trained"]["at_summary_layer"]
        print(f"  {name}: {format_interval(at['in_distribution'])}, "
              f"{format_interval(at['cross_lingual'])}")
    for verdict in summary["verdicts"]:
        print(f"  [{verdict['verdict']}] {verdict['finding']}")
    print(f"report: {Path(args.out) / 'report.html'}")
    return 0
