"""The rank-aware writers: both HDF5 paths at 1 and 2 ranks give the same files, the
files open in BMTK, libsonata and bluepysnap, and a kill -9 between or inside blocks
leaves readable files from which a resume ends equal to an uninterrupted run.
"""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from tests.io import drive_writers as drv
from tests.io.helpers import (assert_same_content, driver_cmd, h5_content, report_bytes_by_rank, run_driver,
                              spikes_as_sorted_pairs, write_bluepysnap_configs)

RUNS = [("serial", 1), ("serial", 2), ("parallel", 1), ("parallel", 2)]


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL mpiexec and every rank at once (Hydra puts each rank in its own session)."""
    try:
        root = psutil.Process(proc.pid)
        tree = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)
    proc.communicate(timeout=30)


def expected_spikes(pop: str) -> np.ndarray:
    ids, ts = drv.all_spikes(pop, drv.POPS[pop])
    keep = (ts >= drv.TSTART) & (ts < drv.TSTOP)
    ids, ts = ids[keep], ts[keep]
    o = np.lexsort((ids, ts))
    return np.stack([ts[o], ids[o].astype(np.float64)])


def expected_report() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gids = [g for g in range(drv.POPS["cortex"]) if g % 3 != 1]
    rows = np.arange(int(round((drv.TSTOP - drv.TSTART) / drv.DT)))
    data = np.concatenate([drv.report_values(rows, g, drv.cell_counts(g)) for g in gids], axis=1)
    ptr = np.concatenate(([0], np.cumsum([drv.cell_counts(g) for g in gids])))
    return np.array(gids), ptr, data


@pytest.mark.mpi
@pytest.mark.parametrize("sort", ["by_time", "by_id", "none"])
def test_both_paths_at_1_and_2_ranks_write_the_same_files(tmp_path: Path, sort: str) -> None:
    outs = {}
    # 'none' also exercises the bounded-memory slicing (a block in slices of a few rows) with the
    # item placement, 'by_id' the per-run slice copies (by_time: whatever the writer picks)
    extra = {"none": ["--max-chunk-bytes", "500", "--placement", "units"],
             "by_id": ["--placement", "slices"]}.get(sort, [])
    for path, ranks in RUNS:
        out = tmp_path / f"{path}{ranks}"
        run_driver(path, ranks, out, "--sort", sort, *extra)
        outs[(path, ranks)] = out
    ref = outs[("serial", 1)]
    for key, out in outs.items():
        assert_same_content(ref / "v_report.h5", out / "v_report.h5")
        if sort != "none" or key[1] == 1:
            assert_same_content(ref / "spikes.h5", out / "spikes.h5")
            assert (ref / "spikes.csv").read_text() == (out / "spikes.csv").read_text()
        else:  # 'none' promises no order: same spikes, and the two paths agree at equal rank counts
            got, want = spikes_as_sorted_pairs(out / "spikes.h5"), spikes_as_sorted_pairs(ref / "spikes.h5")
            assert all(np.array_equal(got[p], want[p]) for p in want)
            assert_same_content(outs[("serial", 2)] / "spikes.h5", outs[("parallel", 2)] / "spikes.h5")

    # the content is the right one, in the promised order
    with h5py.File(ref / "spikes.h5", "r") as f:
        for pop in drv.POPS:
            g = f[f"spikes/{pop}"]
            ids, ts = g["node_ids"][()], g["timestamps"][()]
            assert g["node_ids"].dtype == np.uint64 and g["timestamps"].dtype == np.float64
            assert g["timestamps"].attrs["units"] == "ms"
            o = np.lexsort((ids, ts))
            assert np.array_equal(np.stack([ts[o], ids[o].astype(float)]), expected_spikes(pop))
            if sort == "by_time":
                assert np.all(np.diff(ts) >= 0)
            if sort == "by_id":
                assert np.all(np.diff(ids.astype(np.int64)) >= 0)
        assert f.attrs["magic"] == 0x0A7A and list(f.attrs["version"]) == [0, 1]
    gids, ptr, data = expected_report()
    with h5py.File(ref / "v_report.h5", "r") as f:
        g = f["report/cortex"]
        assert g["data"].dtype == np.float32 and g["data"].attrs["units"] == "mV"
        assert np.array_equal(g["mapping/node_ids"][()], gids)
        assert np.array_equal(g["mapping/index_pointer"][()], ptr)
        assert g["mapping/index_pointers"].id == g["mapping/index_pointer"].id  # one dataset, two names
        assert list(g["mapping/time"][()]) == [drv.TSTART, drv.TSTOP, drv.DT]
        assert np.array_equal(g["data"][()], data)


def _data_bytes(path: Path) -> bytes:
    """The raw bytes of the report's ``data`` as they lie in the file (not through HDF5)."""
    with h5py.File(path, "r") as f:
        ds = f["report/cortex/data"]
        offset, nbytes = ds.id.get_offset(), ds.id.get_storage_size()
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(nbytes)


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, extra", [
    (2, ["--chunk-bytes", "300"]),  # one node: a shared ring of 2-row chunks, written in turns
    (2, ["--group-size", "1"]),  # as on two nodes: columns travel as messages
    (3, ["--group-size", "2", "--max-chunk-bytes", "700", "--chunk-bytes", "200"]),  # both, sliced blocks
    (4, ["--chunk-bytes", "500"]),  # ranks with fewer chunks than others still pass the turn
    (2, ["--placement", "units", "--elements-scale", "3"]),  # 3-column items
    (2, ["--placement", "slices", "--elements-scale", "3"]),
], ids=["shared", "messages", "mixed-sliced", "four", "units", "slices"])
def test_serial_path_every_rank_writes_and_the_file_is_byte_identical(tmp_path: Path, ranks: int,
                                                                     extra: list[str]) -> None:
    """Plain-wheel path at several ranks: each rank pwrites its own rows, and the whole file,
    ``data``'s raw bytes included, equals the 1-rank file byte for byte (a resume on another
    rank count rewrites the tail of the same file, so nothing less will do)."""
    scale = extra[extra.index("--elements-scale") + 1] if "--elements-scale" in extra else "1"
    ref, out = tmp_path / "one", tmp_path / "many"
    one = report_bytes_by_rank(run_driver("serial", 1, ref, "--elements-scale", scale))
    many = report_bytes_by_rank(run_driver("serial", ranks, out, *extra))
    n_bytes = len(_data_bytes(ref / "v_report.h5"))
    assert one == [n_bytes]
    assert len(many) == ranks and sum(many) == n_bytes
    assert all(b > 0 for b in many), f"a rank wrote nothing: {many}"
    assert _data_bytes(out / "v_report.h5") == _data_bytes(ref / "v_report.h5")
    assert (out / "v_report.h5").read_bytes() == (ref / "v_report.h5").read_bytes()


@pytest.mark.mpi
@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_outputs_open_in_bmtk_libsonata_and_bluepysnap(tmp_path: Path, path: str) -> None:
    import bluepysnap
    import libsonata
    from bmtk.utils.reports.compartment import CompartmentReport
    from bmtk.utils.reports.spike_trains import SpikeTrains
    from bmtk.utils.reports.spike_trains.core import SortOrder

    gids, ptr, data = expected_report()
    i5 = gids.tolist().index(5)
    node5 = data[:, ptr[i5]:ptr[i5 + 1]]
    for sort, code in (("by_time", "by_time"), ("by_id", "by_id")):
        out = tmp_path / sort
        run_driver(path, 2, out, "--sort", sort)
        # BMTK
        st = SpikeTrains.load(str(out / "spikes.h5"))
        assert set(st.populations) == set(drv.POPS)
        for pop in ("cortex", "thalamus"):
            assert st.sort_order(pop) == SortOrder(code)
            df = st.to_dataframe(populations=pop)
            got = df.sort_values(["timestamps", "node_ids"])
            assert np.array_equal(got["timestamps"].to_numpy(), expected_spikes(pop)[0])
        csv = SpikeTrains.load(str(out / "spikes.csv"))
        assert len(csv.to_dataframe(populations="cortex")) == expected_spikes("cortex").shape[1]
        rep = CompartmentReport(str(out / "v_report.h5"), mode="r")
        assert rep.populations == ["cortex"]
        assert np.allclose(rep.data(node_id=5, population="cortex"), node5)
        assert list(rep.element_ids(node_id=5, population="cortex")) == list(range(drv.cell_counts(5)))
        # libsonata
        sr = libsonata.SpikeReader(str(out / "spikes.h5"))
        assert sr["cortex"].sorting == code
        pairs = np.array(sr["cortex"].get(), dtype=float)
        assert np.array_equal(pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))][:, [1, 0]].T, expected_spikes("cortex"))
        er = libsonata.ElementReportReader(str(out / "v_report.h5"))["cortex"]
        assert er.get_node_ids() == gids.tolist()
        frame = er.get(node_ids=[5])
        assert np.array_equal(np.asarray(frame.data), node5)
        # bluepysnap (through a SONATA simulation config)
        sim = bluepysnap.Simulation(str(write_bluepysnap_configs(out, drv.POPS)))
        assert len(sim.spikes["cortex"].get()) == expected_spikes("cortex").shape[1]
        frame = sim.reports["v_report"]["cortex"].get()
        assert frame.shape == data.shape and np.array_equal(frame.to_numpy(), data)


def _kill_and_resume(tmp_path: Path, path: str, ranks: int, sort: str, block: int, delay: float,
                     label: str) -> int:
    """Start a slow run, SIGKILL every rank ``delay`` s after ``block`` ended, check the files, resume, compare."""
    out, state = tmp_path / f"{label}-out", tmp_path / f"{label}-state"
    cmd, env = driver_cmd(path, ranks, out, "--sort", sort, "--sleep", "0.05", "--elements-scale", "400",
                          "--state-dir", str(state))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.strip() == f"block {block} done":
            break
    time.sleep(delay)
    kill_tree(proc)
    if not (state / "state.json").exists():
        return 0  # killed before the first checkpoint: nothing to resume from
    blocks_done = json.loads((state / "state.json").read_text())["block"]
    # whatever was on disk at the kill opens (the files are closed between blocks)
    with h5py.File(out / "v_report.h5", "r") as f:
        assert f["report/cortex/data"].shape[0] == 1000
    # spikes: the file and its shadow are written one after the other, so at least one opens
    readable = []
    for name in ("spikes.h5", ".spikes.h5.shadow"):
        try:
            with h5py.File(out / name, "r") as f:
                readable.append(set(f["spikes"]) == set(drv.POPS))
        except (OSError, KeyError):
            pass
    assert any(readable), "neither the spikes file nor its shadow survived the kill"
    run_driver(path, ranks, out, "--sort", sort, "--elements-scale", "400", "--state-dir", str(state), "--resume")
    ref = tmp_path / "reference"
    if not ref.exists():
        run_driver("serial", 1, ref, "--sort", sort, "--elements-scale", "400")
    assert_same_content(ref / "v_report.h5", out / "v_report.h5")
    assert_same_content(ref / "spikes.h5", out / "spikes.h5")
    assert (ref / "spikes.csv").read_text() == (out / "spikes.csv").read_text()
    return blocks_done


@pytest.mark.mpi
@pytest.mark.parametrize("path", ["serial", "parallel"])
def test_kill9_at_random_times_then_resume_gives_the_uninterrupted_files(tmp_path: Path, path: str) -> None:
    rng = np.random.default_rng(int(time.time()))
    # a block is ~0.05 s of 'simulation' then ~0.05 s of writing: a random delay after a
    # block ends lands between blocks or inside the next block's writes; block 10 is the
    # last, so the third trial may also land in the close-time sort and CSV
    trials = [(1, "by_id", int(rng.integers(1, 6))), (2, "by_time", int(rng.integers(2, 9))),
              (2, "by_id", int(rng.integers(6, 11)))]
    resumed = []
    for i, (ranks, sort, block) in enumerate(trials):
        resumed.append(_kill_and_resume(tmp_path / sort, path, ranks, sort, block, float(rng.uniform(0, 0.12)),
                                        f"trial{i}"))
    print("blocks done at each kill:", resumed)
    assert any(0 < b < 10 for b in resumed), f"no trial was killed mid-run: {resumed}"


@pytest.mark.mpi
def test_resume_repairs_a_spikes_file_broken_by_the_kill(tmp_path: Path) -> None:
    """A kill during the spikes file's metadata write is rare; force it: the shadow copy must save the run."""
    out, state = tmp_path / "out", tmp_path / "state"
    cmd, env = driver_cmd("serial", 2, out, "--sort", "by_time", "--sleep", "0.05", "--state-dir", str(state))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.strip() == "block 4 done":
            break
    kill_tree(proc)
    spikes = out / "spikes.h5"
    spikes.write_bytes(spikes.read_bytes()[:1000])  # what a kill inside HDF5's metadata flush can leave
    with pytest.raises(OSError):
        h5py.File(spikes, "r")
    run_driver("serial", 2, out, "--sort", "by_time", "--state-dir", str(state), "--resume")
    run_driver("serial", 1, tmp_path / "ref", "--sort", "by_time")
    assert_same_content(tmp_path / "ref" / "spikes.h5", spikes)
    assert not (out / ".spikes.h5.shadow").exists()


def test_h5_content_sees_a_difference(tmp_path: Path) -> None:
    """The comparison the tests rely on must be able to fail."""
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    for p, v in ((a, 1.0), (b, 1.5)):
        with h5py.File(p, "w") as f:
            f["x"] = np.array([0.0, v], dtype=np.float32)
    assert h5_content(a) != h5_content(b)
    with pytest.raises(AssertionError):
        assert_same_content(a, b)
