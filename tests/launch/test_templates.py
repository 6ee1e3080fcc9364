"""Batch templates: every value a user passes stays one inert word, whatever it holds.

Each example renders a template with hostile strings (quotes, $(), backticks, newlines,
spaces, placeholders), checks that bash parses the script, then runs its value handling
(the SONATARUN_PRINT_COMMAND mode, sourced so an EXIT trap can read the variables it set)
and checks that every value comes back byte for byte and that no injected command ran.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonatarun.errors import InputError
from sonatarun.launch.templates import TEMPLATE_FILES, BatchRequest, check_word, render_batch

MARKER = Path(tempfile.gettempdir()) / f"sonatarun-pwned-{os.getpid()}"
M = str(MARKER)
HOSTILE = [f"$(touch {M})", f"`touch {M}`", f"'; touch {M}; '", f'"; touch {M}; "', f"\ntouch {M}\n",
           f"a b\n#SBATCH --wrap='touch {M}'", "${HOME}", "$((1+1))", "\\", "'", '"', "{{RUN}}", "{{VALUES}}",
           f"x;touch {M}", f"|touch {M}", f"&& touch {M}", "--", "-n", " ", "\t", "*", "~", "!!", "$'\\x41'",
           f"$(touch {M})\r\n", "é ü 中文", "%j"]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24),
    st.lists(st.sampled_from(HOSTILE), min_size=2, max_size=3).map("".join),
)
env_names = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"PATH", "PWD", "SHLVL", "_", "OLDPWD", "SONATARUN_PRINT_COMMAND", "BASH_ENV", "IFS",
                        "WORKDIR", "OUTPUT_DIR", "SCRIPT", "LAUNCH", "RUN", "UID", "EUID", "PPID", "BASHOPTS",
                        "SHELLOPTS", "HOME"} and not n.startswith("BASH"))


def run_values(script: Path, cwd: Path) -> tuple[list[bytes], list[bytes]]:
    """(printed command words, [WORKDIR, OUTPUT_DIR, SCRIPT, env entries...]) of the rendered script."""
    probe = 'trap \'printf "%s\\0" "$WORKDIR" "$OUTPUT_DIR" "$SCRIPT"; env -0\' EXIT; source "$1"'
    proc = subprocess.run(["bash", "-c", probe, "probe", str(script)], cwd=cwd, capture_output=True, timeout=20,
                          env={"PATH": os.environ["PATH"], "SONATARUN_PRINT_COMMAND": "1"})
    assert proc.returncode == 0, proc.stderr
    words = proc.stdout.split(b"\0")
    return words, proc.stderr


@pytest.mark.parametrize("scheduler", sorted(TEMPLATE_FILES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workdir=hostile_text, output_dir=hostile_text, script=hostile_text,
       launch=st.lists(hostile_text, max_size=3), run=st.lists(hostile_text, min_size=1, max_size=5),
       env=st.dictionaries(env_names, hostile_text, max_size=3), partition=st.one_of(st.none(), hostile_text))
def test_hostile_values_stay_inert(tmp_path, scheduler, workdir, output_dir, script, launch, run, env, partition):
    req = BatchRequest(scheduler=scheduler, job_name="ring-test", nodes=2, ranks_per_node=3, threads_per_rank=2,
                       walltime=3600, signal_seconds=120, workdir=workdir, output_dir=output_dir, script_path=script,
                       launch=launch, run=run, env=env, partition=partition, account=partition)
    try:
        text = render_batch(req)
    except InputError:
        # Directive values are refused unless plainly safe; shell values never are.
        assert partition
        with pytest.raises(InputError):
            check_word(partition, "--partition")
        return
    if partition:
        assert check_word(partition, "--partition") == partition
    path = tmp_path / f"job.{scheduler}"
    path.write_text(text)
    parsed = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    words, stderr = run_values(path, tmp_path)
    n = len(launch) + len(run)
    assert [w.decode() for w in words[:n]] == launch + run
    assert [w.decode() for w in words[n:n + 3]] == [workdir, output_dir, script]
    exported = dict(w.decode().split("=", 1) for w in words[n + 3:] if w)
    for name, value in env.items():
        assert exported.get(name) == value
    assert not MARKER.exists(), f"an injected command ran (stderr: {stderr!r})"
    # Directives: one line each, nothing past the shebang block that the scheduler would read as its own.
    directive = {"slurm": "#SBATCH", "pbs": "#PBS", "lsf": "#BSUB", "sge": "#$"}[scheduler]
    lines = text.split("\n")  # schedulers split on \n only
    first_code = next(i for i, line in enumerate(lines) if line.startswith("set -u"))
    assert not any(line.startswith(directive) for line in lines[first_code:])


def test_templates_carry_the_preemption_contract():
    req = BatchRequest(scheduler="slurm", job_name="ring", nodes=1, ranks_per_node=2, threads_per_rank=1,
                       walltime=300, signal_seconds=30, workdir="/w", output_dir="/o", script_path="/s",
                       launch=["srun"], run=["sonatarun", "run", "c.json"])
    slurm = render_batch(req)
    for needle in ("#SBATCH --signal=B:USR1@30", "#SBATCH --requeue", "#SBATCH --hint=nomultithread",
                   "scontrol requeue", "SLURM_RESTART_COUNT", "--resume", "wait \"$child\""):
        assert needle in slurm
    req.scheduler = "lsf"
    assert "#BSUB -wa USR1" in render_batch(req) and "#BSUB -W 0:05" in render_batch(req)
    req.scheduler = "sge"
    sge = render_batch(req)
    assert "#$ -l s_rt=00:04:30" in sge and "exit 99" in sge
    req.scheduler = "pbs"
    assert "kill -s USR1" in render_batch(req)
    with pytest.raises(InputError, match="walltime"):
        from sonatarun.launch.templates import parse_walltime

        parse_walltime("5 minutes")
