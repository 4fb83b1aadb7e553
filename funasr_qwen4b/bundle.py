"""The converted bundle: `Bundle`, bundle.json read and validated once; the
checks that tie it to its original files; and its atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterator

from .config import AdaptorConfig, QueryConfig, SenseVoiceConfig
from .decoding import DecodeConfig
from .prompt import DEFAULT_TEMPLATE, template_text

FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
COMPONENTS = ("sensevoice", "adaptor", "llm")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_entry(path: str | Path) -> dict:
    path = Path(path).resolve()
    return {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_atomic(path: str | Path, write_fn, suffix: str | None = None) -> None:
    """`write_fn(tmp_path)` writes beside `path`, then the file is renamed into
    place: a reader never sees a half-written file, and a failure leaves none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | Path, obj) -> None:
    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    write_atomic(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def write_component(bundle: str | Path, name: str, entry: dict, *, force: bool = False,
                    meta: dict | None = None) -> Iterator[Path]:
    """Yield a temporary directory to fill; on success it becomes BUNDLE/name and
    bundle.json lists it with `entry` (and takes the top-level keys in `meta`).
    On any error nothing is left behind.

    A new bundle is built beside its final path and renamed into place, so a
    half-written bundle never exists under the user's name.
    """
    assert name in COMPONENTS, name
    bundle = Path(bundle)
    if bundle.exists() and not bundle.is_dir():
        raise ValueError(f"output {bundle} exists and is not a directory")
    new_bundle = not bundle.exists()
    if not new_bundle:
        existing = Bundle.read(bundle) if (bundle / BUNDLE_JSON).exists() else None
        if existing is None and any(bundle.iterdir()):
            raise ValueError(f"output {bundle} is a non-empty directory that is not a bundle; choose another -o")
        if (bundle / name).exists() and not force:
            raise ValueError(f"{bundle / name} already exists; pass --force to replace it")
    bundle.parent.mkdir(parents=True, exist_ok=True)
    stage_root = Path(tempfile.mkdtemp(prefix=f".{bundle.name}.", dir=bundle.parent if new_bundle else bundle))
    stage = stage_root / name
    stage.mkdir()
    try:
        yield stage
        if new_bundle:
            _write_meta(stage_root, None, name, entry, meta)
            os.rename(stage_root, bundle)
            return
        old = bundle / name
        trash = stage_root / f"{name}.old"
        if old.exists():
            os.rename(old, trash)
        try:
            os.rename(stage, old)
        except BaseException:
            if trash.exists():
                os.rename(trash, old)
            raise
        _write_meta(bundle, Bundle.read(bundle).meta if (bundle / BUNDLE_JSON).exists() else None, name, entry, meta)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)


def _write_meta(root: Path, meta: dict | None, name: str, entry: dict, extra: dict | None) -> None:
    meta = meta or {"format_version": FORMAT_VERSION, "components": {}}
    meta["components"][name] = entry
    meta.update(extra or {})
    write_json_atomic(root / BUNDLE_JSON, meta)


# Each component's config.json records the weight layout it was written in;
# loaders refuse any other, so no layout is ever guessed or flipped twice.
LAYOUTS = {
    "sensevoice": {"version": 1, "fsmn_block.weight": "mlx conv1d (C_out, K, C_in/groups)"},
    "adaptor": {"version": 1, "self_attn.in_proj": "split into q_proj, k_proj, v_proj (rows q, k, v)"},
}


def write_component_config(stage: Path, name: str, config: dict, **extra) -> None:
    write_json_atomic(stage / "config.json", {"layout": LAYOUTS[name], "config": config, **extra})




def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); reconvert") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, not {type(data).__name__}; reconvert")
    return data


@dataclass(frozen=True)
class Component:
    """One entry of bundle.json's `components`."""

    name: str
    dtype: str
    q_bits: int | None
    sources: dict[str, dict]  # original file name -> {path, sha256, bytes}
    entry: dict = field(repr=False)

    @property
    def precision(self) -> str:
        """What it computes in: its dtype, or "8bit"/"4bit" where quantized."""
        return f"{self.q_bits}bit" if self.q_bits else self.dtype


@dataclass(frozen=True)
class Bundle:
    """A converted bundle, read and validated once and handed down."""

    root: Path
    meta: dict = field(repr=False)
    components: dict[str, Component]
    query: QueryConfig  # the encoder's query rows, as converted
    decode: DecodeConfig  # the generation settings
    presets: dict[str, str] = field(repr=False)
    default_template: str = DEFAULT_TEMPLATE
    keep_query_frames: bool = True

    @classmethod
    def read(cls, root: str | Path) -> "Bundle":
        root = Path(root)
        path = root / BUNDLE_JSON
        if not root.is_dir() or not path.is_file():
            raise FileNotFoundError(f"{root} is not a bundle (no {BUNDLE_JSON}); create one with `funasr-qwen4b convert`")
        meta = _read_json(path, "reconvert")
        version = meta.get("format_version")
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ValueError(f"{path}: format_version is {version!r}; this version reads {FORMAT_VERSION}: reconvert")
        raw = meta.get("components")
        if not isinstance(raw, dict) or not raw:
            raise ValueError(f"{path}: no components; reconvert")
        components = {}
        for name, entry in raw.items():
            if name not in COMPONENTS or not isinstance(entry, dict):
                raise ValueError(f"{path}: unknown or malformed component {name!r}; known: {list(COMPONENTS)}")
            dtype, q_bits, sources = entry.get("dtype"), entry.get("q_bits"), entry.get("sources")
            if dtype not in ("float32", "float16", "bfloat16") or q_bits not in (None, 4, 8) \
                    or not isinstance(sources, dict):
                raise ValueError(f"{path}: component {name!r} has a bad dtype, q_bits or sources; reconvert")
            components[name] = Component(name, dtype, q_bits, sources, entry)
        if not (root / "sensevoice").is_dir() and "sensevoice" in components:
            raise FileNotFoundError(f"{root / 'sensevoice'} is missing although {path} lists it; reconvert")
        sv = raw.get("sensevoice", {})
        prompt = meta.get("prompt", {})
        if not isinstance(prompt, dict) or not isinstance(prompt.get("presets", {}), dict):
            raise ValueError(f"{path}: `prompt` must be an object with `default` and `presets`")
        keep = raw.get("adaptor", {}).get("keep_query_frames", True)
        if not isinstance(keep, bool):
            raise ValueError(f"{path}: adaptor.keep_query_frames must be true or false")
        return cls(root, meta, components,
                   QueryConfig.from_dict(sv.get("query", {}), f"{path} components.sensevoice.query"),
                   DecodeConfig.from_dict(meta.get("generation", {}), f"{path} generation"),
                   dict(prompt.get("presets", {})), prompt.get("default", DEFAULT_TEMPLATE), keep)

    def has(self, *names: str) -> bool:
        return all(n in self.components for n in names)

    def require(self, *names: str, why: str = "") -> None:
        missing = [n for n in names if n not in self.components]
        if missing:
            raise ValueError(f"bundle {self.root} has no {', '.join(missing)}{f' ({why})' if why else ''}; add it with "
                             f"`funasr-qwen4b convert {missing[0]} ... -o {self.root}`")

    def dir(self, name: str) -> Path:
        self.require(name)
        return self.root / name

    @property
    def precisions(self) -> dict[str, str]:
        return {c: self.components[c].precision for c in COMPONENTS if c in self.components}

    @property
    def strict(self) -> bool:
        """Every component float32: the strict parity tier."""
        return set(self.precisions.values()) == {"float32"}

    def template(self, name: str | None = None, file: str | Path | None = None) -> str:
        """Template text: a file, a preset (the bundle's first), or the bundle's default."""
        return template_text(name, file, self.presets, self.default_template)

    def component_config(self, name: str) -> dict:
        """BUNDLE/name/config.json (read once): the component's config, in the layout it was
        written in (loaders refuse any other, so no layout is ever guessed or flipped twice)."""
        cache = self.__dict__.setdefault("_component_configs", {})  # frozen: fill the cache directly
        if name not in cache:
            data = _read_json(self.dir(name) / "config.json", f"convert the {name} component again")
            if data.get("layout") != LAYOUTS[name]:
                raise ValueError(f"{self.root / name / 'config.json'}: layout {data.get('layout')} is not "
                                 f"{LAYOUTS[name]}; reconvert with this version")
            if not isinstance(data.get("config"), dict):
                raise ValueError(f"{self.root / name / 'config.json'} has no `config` object; reconvert")
            cache[name] = data
        return cache[name]

    @property
    def sensevoice_config(self) -> SenseVoiceConfig:
        return SenseVoiceConfig.from_dict(self.component_config("sensevoice")["config"])

    @property
    def adaptor_config(self) -> AdaptorConfig:
        return AdaptorConfig.from_dict(self.component_config("adaptor")["config"])

    @property
    def adaptor_quantization(self) -> dict | None:
        """`{"bits", "group_size"}` when the adaptor's linear layers were quantized at conversion."""
        return self.component_config("adaptor").get("quantization")

    # --- the original files it was converted from ---------------------------

    def source(self, name: str, override: str | Path | None = None) -> Path:
        """The original a component was converted from (or `override`), checked
        by sha256: the SenseVoice directory, the adaptor .pt, the LLM directory."""
        comp = self.components[name]
        flag = {"sensevoice": "--sensevoice-src DIR", "adaptor": "--adaptor-src FILE", "llm": "--llm-src DIR"}[name]
        if name == "sensevoice":
            root = Path(override) if override else Path(comp.sources["model.pt"]["path"]).parent
            self._verify(root / "model.pt", comp.sources["model.pt"], name, flag)
            return root
        if name == "adaptor":
            file_name, recorded = next(iter(comp.sources.items()))
            path = Path(override) if override else Path(recorded["path"])
            return self._verify(path, recorded, name, flag)
        root = Path(override or comp.entry["source_dir"])
        for file_name, recorded in comp.sources.items():
            self._verify(root / file_name, recorded, "LLM", flag)
        return root

    def _verify(self, path: Path, recorded: dict, what: str, flag: str) -> Path:
        if not path.is_file():
            raise FileNotFoundError(f"the reference needs the original {what} file; {path} not found (pass {flag})")
        if sha256_file(path) != recorded["sha256"]:
            raise ValueError(f"{path} is not the file {self.root} was converted from (sha256 differs); "
                             f"pass the right {flag} or reconvert")
        return path


def as_bundle(bundle: "str | Path | Bundle") -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.read(bundle)
