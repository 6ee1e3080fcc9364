"""Run this example with BMTK's PointNet (the reference sonatarun's NEST engine must match).

    python run_bmtk.py [config.simulation.json] [--output-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                  "config.simulation.json"))
    parser.add_argument("--output-dir", default=None, help="write outputs here instead of the config's output_dir")
    args = parser.parse_args(argv)

    from bmtk.simulator import pointnet

    config_path = os.path.abspath(args.config)
    if args.output_dir:
        # Same config, other output directory: BMTK resolves paths relative to the config's
        # directory through ${configdir}, so write the patched copy next to the original.
        with open(config_path) as f:
            raw = json.load(f)
        raw.setdefault("output", {})["output_dir"] = os.path.abspath(args.output_dir)
        fd, patched = tempfile.mkstemp(suffix=".json", prefix=".bmtk_", dir=os.path.dirname(config_path))
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f)
        config_path = patched
    try:
        conf = pointnet.Config.from_json(config_path)
        conf.build_env()
        net = pointnet.PointNetwork.from_config(conf)
        sim = pointnet.PointSimulator.from_config(conf, net)
        sim.run()
    finally:
        if args.output_dir:
            os.remove(config_path)


if __name__ == "__main__":
    main(sys.argv[1:])
