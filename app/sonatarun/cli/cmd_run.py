"""`sonatarun run CONFIG`: simulate, writing spikes, reports and the log to output_dir."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a SONATA simulation config",
                       description="Run a SONATA simulation config (BMTK dialect). Under mpiexec/srun every "
                                   "rank runs this same command.")
    p.add_argument("config", type=Path, help="simulation config JSON (config.simulation.json)")
    p.add_argument("--output-dir", type=Path, help="write outputs here instead of the config's output_dir")
    p.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    p.add_argument("--checkpoint-interval", type=float, metavar="MS",
                   help="write a checkpoint every MS simulated milliseconds (at block ends)")
    p.add_argument("--threads", type=int, metavar="N", help="threads per rank (NEST local_num_threads, NEURON pc.nthread)")
    p.add_argument("--coreneuron", action="store_true", default=None,
                   help="NEURON engine: integrate with CoreNEURON (mechanisms compiled for it on first use; "
                        "no checkpoints)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sonatarun.simulation import Simulation

    sim = Simulation.from_config(args.config, output_dir=args.output_dir, resume=args.resume,
                                 checkpoint_interval=args.checkpoint_interval, threads=args.threads,
                                 debug=args.debug, coreneuron=args.coreneuron)
    result = sim.run()
    if sim.comm.is_root:
        print(f"sonatarun: {result.n_spikes} spikes in {result.wall_seconds:.2f} s -> {result.output_dir}")
    return 0
