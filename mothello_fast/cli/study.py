"""Run the whole mOthello study: data, training, probes, alignment matrix, transfer, and a
report (results.json, plots, report.md). Re-running skips the finished steps.

Example:
    mothello study --setting anchors:8 --languages atomic,atomic --scale tiny --out study/
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--setting", default="naive",
                        help="naive, anchors:K (K anchored squares) or unified")
    parser.add_argument("--languages", default="atomic,atomic",
                        help="language spec, e.g. atomic,split:3,compositional")
    parser.add_argument("--scale", choices=["tiny", "small", "paper"], default="tiny")
    parser.add_argument("--out", required=True, help="study directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probe", choices=["mlp", "linear"], default="mlp")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..report import format_accuracy
    from ..study import run_study

    results = run_study(setting=args.setting, languages=args.languages, scale=args.scale,
                        out_dir=args.out, seed=args.seed, probe=args.probe, device=args.device,
                        progress=not args.quiet)
    alignment = results["alignment"]
    print(f"alignment at layer {alignment['layer']}: in-distribution "
          f"{alignment['in_distribution']:.4f}, cross-lingual "
          f"{format_accuracy(alignment['cross_lingual'])}; "
          f"transfer gains {results['transfer']['gain']}; report in {Path(args.out) / 'report.md'}")
    return 0
