"""The converted bundle: `Bundle`, bundle.json read and validated once, and the
checks that tie it to its original files, to the files conversion wrote, and its
components to each other. Writing a component is convert/writing.py's."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_KIND, MODEL_KINDS, AdaptorConfig, NanoAdaptorConfig, QueryConfig, SenseVoiceConfig
from .decoding import DecodeConfig
from .files import read_json, sha256_file, sum64
from .prompt import DEFAULT_TEMPLATE, PRESETS, template_text
from .segments import MAX_SEGMENT_SECONDS

log = logging.getLogger(__name__)

# 2: each component records the files conversion wrote (bytes, sha256, sum64).
FORMAT_VERSION = 2
BUNDLE_JSON = "bundle.json"
COMPONENTS = ("sensevoice", "adaptor", "llm", "vad")
_META_KEYS = {"format_version", "components", "prompt", "generation", "kind"}
_ENTRY_KEYS = {"dtype", "q_bits", "sources", "files", "query", "keep_query_frames", "embeddings_8bit", "source_dir"}
# Which component feeds which: a component's widths are checked against its input's.
_UPSTREAM = {"adaptor": "sensevoice", "llm": "adaptor"}
_RECONVERT = {"sensevoice": "funasr-qwen4b convert sensevoice SRC_DIR", "adaptor": "funasr-qwen4b convert adaptor FILE.pt",
              "llm": "funasr-qwen4b convert llm HF_DIR", "vad": "funasr-qwen4b convert vad SRC_DIR"}


# --- components that fit together ------------------------------------------------

def _config_of(path: Path, name: str):
    """A component directory's config: SenseVoiceConfig, AdaptorConfig, or the LLM's config.json dict."""
    data = read_json(path / "config.json", f"reconvert the {name} component")
    if name == "llm":
        return data
    if not isinstance(data.get("config"), dict):
        raise ValueError(f"{path / 'config.json'} has no `config` object; reconvert the {name} component")
    cls = SenseVoiceConfig if name == "sensevoice" else adaptor_config_class(data.get("layout"))
    return cls.from_dict(data["config"], f"{path / 'config.json'} config")


def llm_hidden_size(config: dict, where: str | Path) -> int:
    hidden = config.get("hidden_size")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise ValueError(f"{where}: hidden_size must be a positive integer, got {hidden!r}")
    return hidden


def check_fit(dirs: dict[str, Path], what: str) -> None:
    """Raise unless the adaptor's widths fit SenseVoice's encoder output and the LLM's hidden size.
    `dirs`: component name → its directory (converted layout; the LLM's config.json as Hugging Face writes it)."""
    configs = {n: _config_of(p, n) for n, p in dirs.items() if n != "vad"}  # the VAD reads the audio alone
    ad = configs.get("adaptor")
    if ad is None:
        return
    problems = []
    sv = configs.get("sensevoice")
    if sv is not None and ad.encoder_dim != sv.encoder.output_size:
        problems.append(f"the adaptor takes {ad.encoder_dim}-wide frames but SenseVoice's encoder gives "
                        f"{sv.encoder.output_size}")
    if "llm" in configs:
        hidden = llm_hidden_size(configs["llm"], dirs["llm"] / "config.json")
        if ad.llm_dim != hidden:
            problems.append(f"the adaptor gives {ad.llm_dim}-wide rows but the LLM's hidden size is {hidden}")
    if problems:
        raise ValueError(f"{what}: the components do not fit together: {'; '.join(problems)}; "
                         f"convert an adaptor trained for this encoder and LLM")


# Each component's config.json records the weight layout it was written in;
# loaders refuse any other, so no layout is ever guessed or flipped twice.
LAYOUTS = {
    "sensevoice": {"version": 1, "fsmn_block.weight": "mlx conv1d (C_out, K, C_in/groups)"},
    "adaptor": {"version": 1, "self_attn.in_proj": "split into q_proj, k_proj, v_proj (rows q, k, v)"},
}


# Fun-ASR-Nano's adaptor (FunASR's `Transformer`) keeps FunASR's names and layouts.
NANO_ADAPTOR_LAYOUT = {"version": 1, "kind": "funasr-nano", "keys": "FunASR's Transformer adaptor, unchanged"}


def adaptor_layout(kind: str) -> dict:
    return NANO_ADAPTOR_LAYOUT if kind == "funasr-nano" else LAYOUTS["adaptor"]


def adaptor_config_class(layout) -> type:
    """The adaptor config a component's recorded layout holds."""
    return NanoAdaptorConfig if layout == NANO_ADAPTOR_LAYOUT else AdaptorConfig


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_files(files, where: str) -> dict[str, dict]:
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{where}.files must list the files conversion wrote; reconvert")
    for rel, rec in files.items():
        ok = isinstance(rec, dict) and _is_int(rec.get("bytes")) and rec["bytes"] >= 0 \
            and isinstance(rec.get("sha256"), str) and len(rec["sha256"]) == 64 \
            and isinstance(rec.get("sum64"), str) and len(rec["sum64"]) == 16
        if not ok or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"{where}.files[{rel!r}] is malformed; reconvert")
    return files


def _check_sources(sources, where: str) -> dict[str, dict]:
    if not isinstance(sources, dict) or not sources:
        raise ValueError(f"{where}.sources must name the original files; reconvert")
    for name, rec in sources.items():
        if not (isinstance(rec, dict) and isinstance(rec.get("path"), str) and isinstance(rec.get("sha256"), str)
                and _is_int(rec.get("bytes"))):
            raise ValueError(f"{where}.sources[{name!r}] needs path, sha256 and bytes; reconvert")
    return sources


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

    @property
    def files(self) -> dict[str, dict]:
        """What conversion wrote into BUNDLE/name: relative path -> {bytes, sha256, sum64}."""
        return self.entry["files"]


@dataclass(frozen=True)
class Bundle:
    """A converted bundle, read and validated once and handed down.

    Each component's files are checked the first time the component is used (`dir`):
    present, of the size conversion wrote, every byte by its sum64, and fitting the
    components beside it. `verify` compares every byte by sha256."""

    root: Path
    meta: dict = field(repr=False)
    components: dict[str, Component]
    query: QueryConfig  # the encoder's query rows, as converted
    decode: DecodeConfig  # the generation settings
    presets: dict[str, str] = field(repr=False)
    default_template: str = DEFAULT_TEMPLATE
    keep_query_frames: bool = True
    # which model: "qwen4b" (SenseVoiceSmall with query rows → AudioAdaptorQwen4B → Qwen3) or
    # "funasr-nano" (Fun-ASR-Nano: the encoder alone → FunASR's Transformer adaptor → Qwen3)
    kind: str = DEFAULT_KIND

    @classmethod
    def read(cls, root: str | Path) -> "Bundle":
        root = Path(root)
        path = root / BUNDLE_JSON
        if not root.is_dir() or not path.is_file():
            raise FileNotFoundError(f"{root} is not a bundle (no {BUNDLE_JSON}); create one with `funasr-qwen4b convert`")
        meta = read_json(path, "reconvert the bundle")
        version = meta.get("format_version")
        if not _is_int(version):
            raise ValueError(f"{path}: format_version must be the number {FORMAT_VERSION}, not {version!r} "
                             f"({type(version).__name__}); write {FORMAT_VERSION} without quotes, or reconvert")
        if version < FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version} was written by an older funasr-qwen4b (before "
                             f"checksums of the converted files were recorded); reconvert into a new directory")
        if version > FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version} is newer than this funasr-qwen4b reads "
                             f"({FORMAT_VERSION}); upgrade: pip install -U funasr-qwen4b-mlx")
        unknown = sorted(set(meta) - _META_KEYS)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known: {sorted(_META_KEYS)}")
        raw = meta.get("components")
        if not isinstance(raw, dict) or not raw:
            raise ValueError(f"{path}: no components; reconvert")
        components = {}
        for name, entry in raw.items():
            if name not in COMPONENTS or not isinstance(entry, dict):
                raise ValueError(f"{path}: unknown or malformed component {name!r}; known: {list(COMPONENTS)}")
            where = f"{path} components.{name}"
            extra = sorted(set(entry) - _ENTRY_KEYS)
            if extra:
                raise ValueError(f"{where}: unknown keys {extra}; known: {sorted(_ENTRY_KEYS)}")
            dtype, q_bits = entry.get("dtype"), entry.get("q_bits")
            if dtype not in ("float32", "float16", "bfloat16") or (q_bits is not None and q_bits not in (4, 8)) \
                    or isinstance(q_bits, bool):
                raise ValueError(f"{where}: dtype {dtype!r} / q_bits {q_bits!r}: dtype must be float32, float16 "
                                 f"or bfloat16 and q_bits null, 4 or 8; reconvert")
            _check_files(entry.get("files"), where)
            if not (root / name).is_dir():
                raise FileNotFoundError(f"{root / name} is missing although {path} lists it; restore it, or "
                                        f"reconvert it: `{_RECONVERT[name]} -o {root} --force`")
            components[name] = Component(name, dtype, q_bits, _check_sources(entry.get("sources"), where), entry)
        sv = raw.get("sensevoice", {})
        prompt = meta.get("prompt", {})
        if not isinstance(prompt, dict) or not isinstance(prompt.get("presets", {}), dict) \
                or not set(prompt) <= {"default", "presets"}:
            raise ValueError(f"{path}: `prompt` must be an object with `default` (a preset name) and `presets` "
                             f"(name -> template text)")
        presets = dict(prompt.get("presets", {}))
        default = prompt.get("default", DEFAULT_TEMPLATE)
        for name in presets:  # every preset usable, not only the one used today
            try:
                template_text(name, None, presets)
            except ValueError as e:
                raise ValueError(f"{path} prompt.presets: {e}") from None
        if not isinstance(default, str) or default not in {**PRESETS, **presets}:
            raise ValueError(f"{path}: prompt.default {default!r} names no preset; use one of "
                             f"{sorted({**PRESETS, **presets})}")
        kind = meta.get("kind", DEFAULT_KIND)
        if kind not in MODEL_KINDS:
            raise ValueError(f"{path}: kind {kind!r} is not one this funasr-qwen4b knows ({', '.join(MODEL_KINDS)}); "
                             f"upgrade, or reconvert")
        keep = raw.get("adaptor", {}).get("keep_query_frames", True)
        if not isinstance(keep, bool):
            raise ValueError(f"{path}: components.adaptor.keep_query_frames must be true or false, got {keep!r}")
        return cls(root, meta, components,
                   QueryConfig.from_dict(sv.get("query", {}), f"{path} components.sensevoice.query"),
                   DecodeConfig.from_dict(meta.get("generation", {}), f"{path} generation"),
                   presets, default, keep, kind)

    def has(self, *names: str) -> bool:
        return all(n in self.components for n in names)

    @property
    def max_segment_seconds(self) -> float:
        """The longest speech segment its LLM is given (segments.MAX_SEGMENT_SECONDS): what its
        model kind was trained on."""
        return MAX_SEGMENT_SECONDS[self.kind]

    def require(self, *names: str, why: str = "") -> None:
        missing = [n for n in names if n not in self.components]
        if missing:
            raise ValueError(f"bundle {self.root} has no {', '.join(missing)}{f' ({why})' if why else ''}; add it with "
                             f"`funasr-qwen4b convert {missing[0]} ... -o {self.root}`")

    def dir(self, name: str) -> Path:
        """BUNDLE/name, checked once: its files as conversion wrote them (size and sum64),
        no stray weights, and widths that fit the components beside it."""
        self.require(name)
        checked = self.__dict__.setdefault("_checked", set())  # frozen: fill the cache directly
        if name not in checked:
            problems = self.check_files(name)
            if problems:
                how = (f"funasr-qwen4b convert bundle --funasr-nano SRC -o {self.root} --force"
                       if self.kind == "funasr-nano" else f"{_RECONVERT[name]} -o {self.root} --force")
                raise ValueError(f"{self.root / name} is damaged: {problems[0]}"
                                 f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}; restore it or "
                                 f"reconvert: `{how}`")
            up = _UPSTREAM.get(name)
            if up in self.components:  # its input comes from `up`: their widths must agree
                check_fit({up: self.dir(up), name: self.root / name}, f"bundle {self.root}")
            checked.add(name)
        return self.root / name

    def check_files(self, name: str) -> list[str]:
        """What is wrong with BUNDLE/name's files, cheaply: missing, another size, other
        bytes (by `sum64`), weights conversion did not write."""
        return [p for rel in self.components[name].files if (p := self._file_problem(name, rel, full=False))] \
            + self._stray(name)

    def verify(self, workers: int = 0) -> dict[str, list[str]]:
        """Every component's problems, reading every byte (sha256); files hashed in parallel."""
        jobs = [(n, rel) for n in self.components for rel in self.components[n].files]
        out = {n: [] for n in self.components}
        with ThreadPoolExecutor(workers or min(len(jobs), os.cpu_count() or 1)) as pool:  # hashlib frees the GIL
            for (name, _), problem in zip(jobs, pool.map(lambda j: self._file_problem(*j, full=True), jobs)):
                if problem:
                    out[name].append(problem)
        return {n: found + self._stray(n) for n, found in out.items()}

    def _file_problem(self, name: str, rel: str, full: bool) -> str | None:
        p, rec = self.root / name / rel, self.components[name].files[rel]
        if not p.is_file():
            return f"{name}/{rel} is missing"
        size = p.stat().st_size
        if size != rec["bytes"]:
            return f"{name}/{rel} is {size:,} bytes, conversion wrote {rec['bytes']:,} (truncated or replaced)"
        if (sha256_file(p) != rec["sha256"]) if full else (sum64(p) != rec["sum64"]):
            return f"{name}/{rel} is not the file conversion wrote ({'sha256' if full else 'checksum'} differs)"
        return None

    def _stray(self, name: str) -> list[str]:
        root, files = self.root / name, self.components[name].files
        return [f"{name}/{rel} was not written by conversion (a loader would read it); remove it"
                for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*.safetensors"))
                if rel not in files]

    @property
    def bytes(self) -> int:
        """Bytes of every file conversion wrote."""
        return sum(r["bytes"] for c in self.components.values() for r in c.files.values())

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
            path = self.dir(name) / "config.json"
            data = read_json(path, f"reconvert the {name} component")
            want = adaptor_layout(self.kind) if name == "adaptor" else LAYOUTS[name]
            if data.get("layout") != want:
                raise ValueError(f"{path}: layout {data.get('layout')} is not {want}; reconvert with this version")
            if not isinstance(data.get("config"), dict):
                raise ValueError(f"{path} has no `config` object; reconvert")
            cache[name] = data
        return cache[name]

    @property
    def sensevoice_config(self) -> SenseVoiceConfig:
        return SenseVoiceConfig.from_dict(self.component_config("sensevoice")["config"],
                                          f"{self.root / 'sensevoice' / 'config.json'} config")

    @property
    def adaptor_config(self) -> AdaptorConfig | NanoAdaptorConfig:
        """The qwen4b adaptor's config, or Fun-ASR-Nano's (by the bundle's kind)."""
        data = self.component_config("adaptor")
        return adaptor_config_class(data["layout"]).from_dict(data["config"],
                                                              f"{self.root / 'adaptor' / 'config.json'} config")

    @property
    def adaptor_quantization(self) -> dict | None:
        """`{"bits", "group_size"}` when the adaptor's linear layers were quantized at conversion."""
        return self.component_config("adaptor").get("quantization")

    # --- the original files it was converted from ---------------------------

    def source(self, name: str, override: str | Path | None = None) -> Path:
        """The original a component was converted from (or `override`), checked
        by sha256: the SenseVoice directory, the adaptor .pt, the LLM directory."""
        comp = self.components[name]
        flag = {"sensevoice": "--sensevoice-src DIR", "adaptor": "--adaptor-src FILE", "llm": "--llm-src DIR",
                # no command reads the VAD's original: the app runs the converted one (mlx_port/vad.py)
                "vad": "the directory: Bundle.source('vad', DIR)"}[name]
        if self.kind == "funasr-nano" and name != "vad":
            return self._nano_source(name, override, flag)
        if name in ("sensevoice", "vad"):
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

    def _nano_source(self, name: str, override: str | Path | None, flag: str) -> Path:
        """Fun-ASR-Nano's components share one original directory (config.yaml, model.pt and the
        Qwen3 folder its llm_conf names); each records the files it was converted from by their
        path in that directory. `override`: the directory elsewhere."""
        comp = self.components[name]
        root = Path(override or comp.entry["source_dir"])
        for rel, recorded in comp.sources.items():
            self._verify(root / rel if override else Path(recorded["path"]), recorded, f"Fun-ASR-Nano {name}", flag)
        return root

    def _verify(self, path: Path, recorded: dict, what: str, flag: str) -> Path:
        if not path.is_file():
            raise FileNotFoundError(f"the reference needs the original {what} file; {path} not found (pass {flag})")
        if path.stat().st_size != recorded["bytes"] or sha256_file(path) != recorded["sha256"]:
            raise ValueError(f"{path} is not the file {self.root} was converted from (sha256 differs); "
                             f"pass the right {flag} or reconvert")
        return path


def as_bundle(bundle: "str | Path | Bundle") -> Bundle:
    return bundle if isinstance(bundle, Bundle) else Bundle.read(bundle)
