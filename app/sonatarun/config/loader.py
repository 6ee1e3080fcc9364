"""Read a SONATA simulation config the way BMTK does: manifest variables, split files.

BMTK substitutes ``$VAR``/``${VAR}`` from the `manifest` (nested definitions
allowed, plus ``configdir``, ``workingdir``, ``configfname``, ``date``, ``time``),
then merges the files named by `network`/`simulation`, each resolved in its own
directory, and prefixes output file names with `output_dir`. We reproduce that so
a BMTK example directory runs unmodified.
"""
from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

from sonatarun.errors import ConfigError

_VAR = re.compile(r"\$\{?\w+\}?")


def load_json(path: str | Path, *, what: str = "config") -> Any:
    """Load a JSON file; errors name the file with the line and column of a syntax error."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{what} file not found", file=p, fix="check the path")
    if p.is_dir():
        raise ConfigError(f"{what} path is a directory, not a JSON file", file=p,
                          fix="give the path of the config .json file")
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file: {exc.strerror}", file=p) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", file=p,
                          fix="correct the JSON syntax there") from exc


def _special_variables(config_path: Path) -> dict[str, str]:
    now = datetime.datetime.now()
    return {
        "workingdir": os.getcwd(),
        "configdir": str(config_path.parent),
        "configfname": str(config_path),
        "time": now.strftime("%H-%M-%S"),
        "date": now.strftime("%Y-%m-%d"),
        "datetime": now.strftime("%Y-%m-%d_%H-%M-%S"),
    }


def substitute(value: str, manifest: dict[str, Any]) -> Any:
    """Replace $VAR and ${VAR}; a value that is exactly one non-string variable keeps its type."""
    out: Any = value
    for m in _VAR.finditer(value):
        token = m.group()
        key = token[2:-1] if token.startswith("${") and token.endswith("}") else token[1:]
        if key not in manifest:
            continue
        rval = manifest[key]
        if isinstance(rval, str) or len(value) > len(token):
            out = out.replace(token, str(rval))
        else:
            return rval
    return out


def build_manifest(raw: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """Resolve the `manifest` section iteratively (nested definitions, no recursion limit issues)."""
    resolved: dict[str, Any] = _special_variables(config_path)
    section = raw.get("manifest", {})
    if not isinstance(section, dict):
        raise ConfigError("'manifest' must be an object of variable names to values", file=config_path,
                          key="manifest")
    pending = {(k[1:] if k.startswith("$") else k): v for k, v in section.items()}
    while pending:
        done = {}
        for key, val in pending.items():
            value = substitute(val, resolved) if isinstance(val, str) else val
            if not (isinstance(value, str) and "$" in value):
                done[key] = value
        if not done:
            names = ", ".join(f"${k}" for k in sorted(pending))
            raise ConfigError(f"cannot resolve manifest variables {names}", file=config_path, key="manifest",
                              fix="define every variable they use, without cycles")
        resolved.update(done)
        for k in done:
            pending.pop(k)
    return resolved


def _insert(obj: Any, manifest: dict[str, Any]) -> Any:
    if isinstance(obj, str):
        return substitute(obj, manifest)
    if isinstance(obj, list):
        return [_insert(v, manifest) for v in obj]
    if isinstance(obj, dict):
        return {k: (v if k == "manifest" else _insert(v, manifest)) for k, v in obj.items()}
    return obj


def load_config(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load, resolve and merge a config and the files its `network`/`simulation` keys name.

    Every value keeps a record of the file it came from in ``_sources`` (section -> file)
    so later errors can name the right file.
    """
    config_path = Path(path).absolute()
    if config_path in _seen:
        raise ConfigError("config files include each other in a loop", file=config_path,
                          fix="remove the circular 'network'/'simulation' reference")
    raw = load_json(config_path)
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a JSON object", file=config_path)
    manifest = build_manifest(raw, config_path)
    conf = _insert(raw, manifest)
    conf["manifest"] = manifest
    conf["config_path"] = str(config_path)
    conf["config_dir"] = str(config_path.parent)
    sources = {k: str(config_path) for k in conf}
    for child in ("network", "simulation"):
        ref = conf.get(child)
        if isinstance(ref, str):
            child_path = Path(ref) if ref.startswith("/") else config_path.parent / ref
            if not child_path.exists():
                raise ConfigError(f"the '{child}' config it names does not exist: {child_path}",
                                  file=config_path, key=child, fix="correct the path (relative to this config)")
            sub = load_config(child_path, _seen + (config_path,))
            sub_sources = sub.pop("_sources")
            sub.pop("config_path", None)
            sub.pop("config_dir", None)
            sub.pop("manifest", None)
            conf.update(sub)
            sources.update({k: sub_sources.get(k, str(child_path)) for k in sub})
    conf["_sources"] = sources
    _prefix_output_files(conf)
    return conf


def _prefix_output_files(conf: dict[str, Any]) -> None:
    output = conf.get("output")
    if not isinstance(output, dict) or "output_dir" not in output:
        return
    out_dir = str(output["output_dir"])
    for key, val in list(output.items()):
        if key == "log_file" or key.startswith("spikes_file"):
            if isinstance(val, str) and val and not (os.path.isabs(val) or val.startswith(out_dir)):
                output[key] = os.path.join(out_dir, val)
