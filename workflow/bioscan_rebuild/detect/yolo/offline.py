"""Keep ultralytics offline: call ``configure_offline`` before ultralytics is first imported, or
import it through ``import_ultralytics``, which does so."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

_OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_VERBOSE": "False", "MPLBACKEND": "Agg"}
_configured_dir: Path | None = None


def _default_config_dir() -> Path:
    if env := os.environ.get("BIOSCAN_YOLO_CONFIG_DIR") or os.environ.get("YOLO_CONFIG_DIR"):
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bioscan-rebuild" / "ultralytics"
    with contextlib.suppress(OSError):
        cache.mkdir(parents=True, exist_ok=True)
        if os.access(cache, os.W_OK):
            return cache
    return Path(tempfile.gettempdir()) / f"bioscan-rebuild-ultralytics-{os.getuid()}"


def _find_ttf() -> Path | None:
    candidates = []
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(Path(location) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    candidates += [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
    ]
    return next((p for p in candidates if p.is_file()), None)


def configure_offline(config_dir: str | Path | None = None) -> Path:
    """Point ultralytics at a writable config dir with a local font and switch off every download,
    auto-install, sync and logging integration. Call before ultralytics is imported; idempotent.
    Returns the config dir (ultralytics keeps its settings under ``<dir>/Ultralytics``)."""
    global _configured_dir
    directory = Path(config_dir) if config_dir else (_configured_dir or _default_config_dir())
    directory = directory.expanduser().resolve()
    if "ultralytics" in sys.modules and _configured_dir is None:
        current = os.environ.get("YOLO_CONFIG_DIR")
        if current is None or Path(current).resolve() != directory or os.environ.get("YOLO_OFFLINE") != "1":
            print(
                "warning: ultralytics was imported before detect.yolo.offline.configure_offline(); "
                "its online checks may already have run",
                file=sys.stderr,
            )
    os.environ["YOLO_CONFIG_DIR"] = str(directory)
    for key, value in _OFFLINE_ENV.items():
        if key == "MPLBACKEND":
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    fonts = directory / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    ttf = _find_ttf()
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if ttf and not (fonts / name).exists():
            shutil.copyfile(ttf, fonts / name)
    _configured_dir = directory
    if "ultralytics" in sys.modules:
        _update_settings(directory)
    return directory


def _update_settings(directory: Path) -> None:
    from ultralytics import settings

    wanted = {
        "sync": False,
        "clearml": False,
        "comet": False,
        "dvc": False,
        "mlflow": False,
        "raytune": False,
        "tensorboard": False,
        "wandb": False,
        "vscode_msg": False,
        "openvino_msg": False,
        "datasets_dir": str(directory / "datasets"),
        "weights_dir": str(directory / "weights"),
        "runs_dir": str(directory / "runs"),
    }
    changes = {k: v for k, v in wanted.items() if k in settings and settings[k] != v}
    if changes:
        settings.update(changes)


def import_ultralytics(config_dir: str | Path | None = None):
    """``configure_offline``, then import ultralytics and pin its settings offline."""
    configure_offline(config_dir)
    import ultralytics

    _update_settings(_configured_dir)
    return ultralytics


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict:
    packages = ("ultralytics", "torch", "torchvision", "onnx", "onnxruntime", "onnxslim", "numpy", "opencv-python")
    found = {"python": platform.python_version(), **{p: _version(p) for p in packages}}
    if found["opencv-python"] is None:  # the headless build (e.g. a GPU machine's image) provides the same cv2
        found["opencv-python"] = _version("opencv-python-headless")
    return found
