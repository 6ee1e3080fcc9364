"""`sonatarun plot OUTPUT_DIR`: PNGs of a run's outputs, without a display (matplotlib Agg).

* ``spikes_raster.png`` from every SONATA spikes file: a raster (populations stacked,
  each in its own colour) over the population firing rates in time bins;
* ``<report>_<population>.png`` from every compartment report: the first column (the
  soma when recorded) of up to ``--max-cells`` cells against time.

Files are found by what they hold (``/spikes`` or ``/report``), not by name, so any
``spikes_file`` or report ``file_name`` a config chose is plotted. Only the plotted
columns and a bounded sample of spikes are read, so a large run plots in bounded memory.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sonatarun.errors import OutputError

MAX_RASTER_POINTS = 2_000_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a run's spikes (raster + rates) and membrane traces to PNGs")
    p.add_argument("output_dir", type=Path, help="the run's output directory")
    p.add_argument("--out", type=Path, help="where the PNGs go (default OUTPUT_DIR/plots)")
    p.add_argument("--max-cells", type=int, default=10, help="traces per report population (default 10)")
    p.add_argument("--bin", type=float, default=None, help="rate bin in ms (default: 1/100 of the run)")
    p.set_defaults(func=run)


def find_outputs(directory: Path) -> tuple[list[Path], list[Path]]:
    """(spikes files, report files) in ``directory``, by their content."""
    import h5py

    spikes, reports = [], []
    for path in sorted(directory.glob("*.h5")):
        try:
            with h5py.File(path, "r") as f:
                if "spikes" in f:
                    spikes.append(path)
                elif "report" in f:
                    reports.append(path)
        except OSError:
            continue  # not HDF5, or still being written: skip rather than fail the whole plot
    return spikes, reports


def plot_spikes(path: Path, png: Path, bin_ms: float | None) -> Path:
    import h5py
    import matplotlib.pyplot as plt

    pops: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with h5py.File(path, "r") as f:
        total = sum(len(g["timestamps"]) for g in f["spikes"].values() if isinstance(g, h5py.Group))
        stride = max(1, int(np.ceil(total / MAX_RASTER_POINTS)))
        for name, g in f["spikes"].items():
            if isinstance(g, h5py.Group) and "timestamps" in g:
                pops[name] = (g["timestamps"][::stride], g["node_ids"][::stride].astype(np.int64))
    t_all = np.concatenate([t for t, _ in pops.values()]) if pops else np.zeros(0)
    t0, t1 = (float(t_all.min()), float(t_all.max())) if len(t_all) else (0.0, 1.0)
    t1 = max(t1, t0 + 1e-9)
    width = bin_ms or max((t1 - t0) / 100.0, 1e-3)
    edges = np.arange(t0, t1 + width, width)
    fig, (ax_r, ax_h) = plt.subplots(2, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    offset = 0
    size = float(np.clip(40_000 / max(len(t_all), 1), 0.5, 12))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, (t, ids)) in enumerate(sorted(pops.items())):
        color = colors[i % len(colors)]
        n_cells = int(ids.max()) + 1 if len(ids) else 0
        ax_r.scatter(t, ids + offset, s=size, marker="o", linewidths=0, color=color, label=f"{name} ({len(t) * stride})")
        if n_cells:
            counts, _ = np.histogram(t, bins=edges)
            rate = counts * stride / (n_cells * width / 1000.0)
            ax_h.step(edges[:-1], rate, where="post", color=color, label=name)
        offset += n_cells
    ax_r.set_ylabel("node id (populations stacked)")
    ax_r.set_title(f"{path.name}" + (f" (every {stride}th spike)" if stride > 1 else ""))
    if pops:
        ax_r.legend(loc="upper right", markerscale=float(np.clip(3 / np.sqrt(size), 1, 8)), fontsize="small")
    ax_h.set_xlabel("time (ms)")
    ax_h.set_ylabel("rate (Hz per cell)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def plot_report(path: Path, out_dir: Path, max_cells: int) -> list[Path]:
    import h5py
    import matplotlib.pyplot as plt

    written = []
    with h5py.File(path, "r") as f:
        for pop, g in f["report"].items():
            m = g["mapping"]
            node_ids = m["node_ids"][()]
            ptr = m["index_pointer"][()] if "index_pointer" in m else m["index_pointers"][()]
            tstart, tstop, dt = (float(x) for x in m["time"][()])
            data = g["data"]
            pick = np.unique(np.linspace(0, len(node_ids) - 1, min(max_cells, len(node_ids))).astype(np.int64)) \
                if len(node_ids) else np.zeros(0, np.int64)
            cols = ptr[pick].astype(np.int64)
            cols = np.unique(cols[cols < data.shape[1]])
            traces = data[:, cols] if len(cols) else np.zeros((data.shape[0], 0))
            time = tstart + dt * np.arange(data.shape[0])
            units = data.attrs.get("units", "")
            variable = data.attrs.get("variable", path.stem)
            fig, ax = plt.subplots(figsize=(10, 5))
            for j, c in enumerate(cols):
                node = node_ids[np.searchsorted(ptr, c, side="right") - 1]
                ax.plot(time, traces[:, j], lw=0.8, label=f"node {int(node)}")
            ax.set_xlabel("time (ms)")
            ax.set_ylabel(f"{variable} ({units})" if units else str(variable))
            ax.set_title(f"{path.name}: {pop} ({len(cols)} of {len(node_ids)} cells, first column each)")
            if len(cols):
                ax.legend(loc="upper right", fontsize="x-small", ncol=2)
            fig.tight_layout()
            png = out_dir / f"{path.stem}_{pop}.png"
            fig.savefig(png, dpi=110)
            plt.close(fig)
            written.append(png)
    return written


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    directory: Path = args.output_dir
    if not directory.is_dir():
        raise OutputError("output directory not found", file=directory, fix="pass the output_dir of a finished run")
    spikes, reports = find_outputs(directory)
    if not spikes and not reports:
        raise OutputError("no SONATA spikes or report file (*.h5 with /spikes or /report) here", file=directory,
                          fix="pass the output_dir of a finished run")
    out_dir = args.out or directory / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in enumerate(spikes):
        name = "spikes_raster.png" if i == 0 else f"{path.stem}_raster.png"
        written.append(plot_spikes(path, out_dir / name, args.bin))
    for path in reports:
        written.extend(plot_report(path, out_dir, args.max_cells))
    for png in written:
        print(png)
    return 0
