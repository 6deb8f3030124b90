"""Benchmarks print figures; tests never assert on time."""


def register(sub) -> None:
    p = sub.add_parser("bench", help="print speed and memory figures (model, ros, soak)")
    p.add_argument("what", choices=["model", "tick", "train", "ros", "soak", "faults", "record"],
                   help="model: per-variant latency; tick: the policy's tick in each precision (and CUDA graph) "
                        "against fp32; train: steps/s on synthetic batches; ros: end-to-end over "
                        "DDS; soak: a long run with load; faults: a driver restart, a clock jump, a checkpoint "
                        "swap, floods, a vanished peer; record: does the recorder keep every message, and "
                        "a killed one its bag")
    p.add_argument("--fusion", default=None, help="only this fusion variant")
    p.add_argument("--config", default=None, help="model/train/tick: this config (YAML or name, e.g. mt10_two_cameras: "
                   "its cameras, chunk, fusion) instead of each fusion variant's")
    p.add_argument("--no-vitb32", action="store_true", help="skip the ViT-B-32 rows (model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--batch", type=int, default=None, help="train: batch size (default 128 on CUDA, 32 on CPU)")
    p.add_argument("--load", type=int, default=None, help="ros/soak/record: N competing busy processes (default 0; "
                   "record: 1)")
    p.add_argument("--duration", type=float, default=600.0, help="soak, record: seconds")
    p.add_argument("--rate", type=float, default=30.0, help="soak: camera rate, Hz")
    p.add_argument("--checkpoint", default=None, help="soak, tick: a trained .pt (default: random weights)")
    p.set_defaults(func=cli_bench)


def cli_bench(args) -> int:
    if args.what == "model":
        from trimodal_lab.bench.model_bench import run
    elif args.what == "tick":
        from trimodal_lab.bench.tick_bench import run
    elif args.what == "train":
        from trimodal_lab.bench.train_bench import run
    else:
        from trimodal_lab.bench.ros_bench import run
    return run(args)
