"""Benchmarks print figures; tests never assert on time."""


def cli_bench(args) -> int:
    if args.what == "model":
        from .model_bench import run
    else:
        from ..ros.bench_ros import run
    return run(args)
