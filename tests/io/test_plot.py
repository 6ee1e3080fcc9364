"""`sonatarun plot OUTPUT_DIR` draws a raster with rates and the report traces."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import run_sonatarun
from tests.io.helpers import run_driver


def test_plot_writes_raster_and_traces(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / "out"
    run_driver("serial", 1, out, "--sort", "by_id")
    proc = run_sonatarun("plot", str(out))
    pngs = sorted(Path(line) for line in proc.stdout.split())
    assert [p.name for p in pngs] == ["spikes_raster.png", "v_report_cortex.png"]
    for png in pngs:
        img = mpimg.imread(png)
        assert img.shape[0] > 300 and img.shape[1] > 600
        assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 20  # something was drawn

    missing = run_sonatarun("plot", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "output directory not found" in missing.stderr
