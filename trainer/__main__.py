"""Command line: ``python -m trainer run --spec job.json``, ``validate-data``, ``export``
and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from trainer.allocator import restart_with_jemalloc
from trainer.datavalidation import DEFAULT_MAX_PROBLEMS, SCENARIO_FORMATS, validate


def _validate_data(args: argparse.Namespace) -> int:
    try:
        report = validate(
            args.scenario,
            args.path,
            tokenizer_path=args.tokenizer,
            max_problems=args.max_problems,
            algorithm=args.algorithm,
        )
    except (ValueError, KeyError) as exc:
        print(f"jingtiao: failed: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        for problem in report.problems:
            print(problem)
        if report.problem_count > len(report.problems):
            print(f"... and {report.problem_count - len(report.problems)} more problem(s)")
        if report.token_lengths:
            stats = report.token_lengths
            print(
                "tokens per row: min {min:.0f}, mean {mean}, p50 {p50:.0f}, p95 {p95:.0f}, "
                "max {max:.0f}, total {total:.0f}".format(**stats)
            )
        print(report.summary())
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train one job described by a spec file")
    run.add_argument("--spec", required=True, help="path of the job spec JSON")
    check = commands.add_parser("validate-data", help="check a data set row by row")
    check.add_argument("--scenario", required=True, choices=sorted(SCENARIO_FORMATS))
    check.add_argument("--path", required=True, help=".jsonl file or folder")
    check.add_argument(
        "--algorithm",
        help="fixes the format where a scenario has several "
        "(llm/rl: dpo reads preference pairs, grpo reads prompts)",
    )
    check.add_argument("--tokenizer", help="tokenizer folder, for token-length statistics")
    check.add_argument("--max-problems", type=int, default=DEFAULT_MAX_PROBLEMS)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    merge = commands.add_parser("export", help="merge a LoRA version into its base model")
    merge.add_argument("--source", required=True, help="the version's folder (with manifest)")
    merge.add_argument("--base", required=True, help="the base model's folder")
    merge.add_argument("--output", required=True, help="where the merged model goes")
    judge = commands.add_parser("evaluate", help="evaluate a version on a data set")
    judge.add_argument("--source", required=True, help="the version's folder (with manifest)")
    judge.add_argument("--base", required=True, help="the base model's folder")
    judge.add_argument("--data", required=True, help="the data set's file or folder")
    judge.add_argument("--scenario", required=True, help="the data set's scenario code")
    judge.add_argument("--output", required=True, help="where the results go")
    judge.add_argument("--rows", type=int, default=200, help="rows read at most")
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        from trainer.evaluate import main as evaluate_main  # pulls in torch

        return evaluate_main(
            args.source, args.base, args.data, args.scenario, args.output, args.rows
        )
    if args.command == "export":
        from trainer.export import main as export_main  # pulls in torch

        return export_main(args.source, args.base, args.output)
    if args.command == "run":
        if argv is None:  # a process of its own, not a call from Python
            from trainer.devices import die_with_launcher

            die_with_launcher()
            try:
                restart_with_jemalloc()  # returns when there is nothing to preload
            except ValueError as exc:
                print(f"jingtiao: failed: {exc}")
                return 2
        from trainer.runner import run as run_job  # pulls in torch; validate-data does not

        status = run_job(args.spec)
        if argv is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # One rank of several, its outcome said and its files closed: it leaves at
            # once. The interpreter's teardown can abort in a collective backend's
            # threads (SIGABRT after "succeeded", seen with DeepSpeed on gloo) and turn a
            # finished run into a failed rank.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        return status
    return _validate_data(args)


if __name__ == "__main__":
    sys.exit(main())
