"""Parity reports: JSON for machines, Markdown for people, a PNG of error by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funasr_qwen4b.atomic import write_atomic, write_json_atomic

from .harness import ParityReport


def to_markdown(report: ParityReport) -> str:
    m = report.meta
    modes = list(report.results)
    oracle = m.get("oracle") or {"name": "funasr"}  # reports written before the oracle was recorded
    lines = [
        f"# Parity: MLX port vs reference ({oracle['name']} oracle)",
        "",
        f"- audio: `{m['audio']}` ({m['seconds']} s); bundle `{m['bundle']}`, model kind `{m.get('kind', 'qwen4b')}`",
        f"- reference: {oracle_line(oracle)}",
        f"- MLX dtype **{m['dtype']}**, tolerance rel L2 ≤ {m['tolerance']['value']:g} "
        f"(tiers: {', '.join(f'{k} {v:g}' for k, v in m['tolerance']['tiers'].items())}); "
        f"MLX_ENABLE_TF32={m['MLX_ENABLE_TF32']}",
        f"- query rows: {m['query']}; dither {m['dither']}",
        f"- versions: {m['versions']}",
        "",
        f"**Result: {'PASS' if report.passed else 'FAIL'}**",
    ]
    for mode in modes:
        first = report.first_failure(mode)
        lines.append(f"- {mode}: " + (f"first tap over tolerance **`{first}`**" if first else "every tap within tolerance"))
    c = report.ctc
    if c is None:
        lines.append("- CTC: none (the model has no CTC head)")
    else:
        lines.append(f"- CTC ids identical: **{c['ids_equal']}** (frame argmax agreement {c['frame_agreement']:.4f}); "
                     f"MLX text: `{c['mlx']['text']}`; tags {c['mlx']['tags']}")
    if report.llm:
        t, lg = report.llm["tokens"], report.llm["logits"]
        first = "none" if t["first_difference"] is None else t["first_difference"]
        lines.append(f"- LLM generated ids identical: **{t['equal']}** ({len(t['mlx'])} MLX / {len(t['reference'])} "
                     f"reference tokens; first differing position: {first}); stop: {report.llm['stop']}")
        lp = report.llm["logprobs"]
        lines.append(f"- LLM generated ids' log-probabilities: max abs difference {lp['max_abs_diff']:.2e} "
                     f"over the {lp['compared']} positions where the ids agree")
        lines.append(f"- LLM prefill logits: top-1 agree {lg['top1']}, top-5 overlap {lg['top5_overlap']:.0%}"
                     f"{' (same order)' if lg['top5_same_order'] else ''}")
        lines.append(f"- LLM text, MLX: `{report.llm['mlx_text']}`; reference: `{report.llm['reference_text']}`")
    lines += ["", "| tap | shape | " + " | ".join(f"{mo} rel L2 | {mo} max abs" for mo in modes) + " | cosine | ok |",
              "|---|---|" + "---|---|" * len(modes) + "---|---|"]
    for i, name in enumerate(report.taps):
        rows = [report.results[mo][i] for mo in modes]
        cells = " | ".join(f"{r.rel_l2:.2e} | {r.max_abs:.2e}" for r in rows)
        ok = "✓" if all(r.passed for r in rows) else "✗ " + "; ".join(r.note for r in rows if r.note)
        lines.append(f"| `{name}` | {rows[0].shape} | {cells} | {rows[0].cosine:.8f} | {ok} |")
    return "\n".join(lines) + "\n"


ORACLE_NAMES = {"funasr": "the reference path (FunASR's own modules)",
                "transformers": "transformers' own FunAsrNanoForConditionalGeneration"}


def oracle_line(oracle: dict) -> str:
    """What the reference side ran, from where, and where it was aligned to FunASR."""
    line, source = ORACLE_NAMES[oracle["name"]], oracle.get("source")
    if isinstance(source, dict):  # the originals given instead of those bundle.json records
        line += " from " + ", ".join(f"{k} `{v}`" for k, v in source.items())
    elif source:
        line += f" from `{source}`"
    if oracle.get("read_as"):
        line += f" ({oracle['read_as']})"
    if "checked_against_bundle" in oracle and not oracle["checked_against_bundle"]:
        line += " (not checked against the bundle: it records FunASR's layout)"
    aligned = oracle.get("aligned_to_funasr")
    if aligned:
        line += "; aligned to FunASR (the parity run follows FunASR, the trained original): " + ", ".join(
            f"{k} {v['used']} (transformers: {v['transformers']})" for k, v in aligned.items())
    return line


def tap_component(tap: str) -> str:
    """The bundle component that computes a tap (frontend, encoder and CTC head: sensevoice)."""
    head = tap.split(".", 1)[0]
    return head if head in ("adaptor", "llm") else "sensevoice"


def tap_tiers(meta: dict, taps: list[str]) -> list[tuple[str, str, float]]:
    """Each tap's (component precision, tolerance tier, that tier's rel L2 tolerance); quantized
    components are held to the bfloat16 tier, as the harness holds them."""
    tiers, out = meta["tolerance"]["tiers"], []
    for tap in taps:
        precision = meta["component_dtypes"].get(tap_component(tap), meta["dtype"])
        tier = precision if precision in tiers else "bfloat16"
        out.append((precision, tier, tiers[tier]))
    return out


def plot(report: ParityReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.taps)
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * n + 4), 4.5))
    x = np.arange(n)
    for mode, rs in report.results.items():
        ax.semilogy(x, [max(r.rel_l2, 1e-12) for r in rs], marker="o", ms=3, label=mode)
    # each component's taps against its own dtype's tier: a dashed step per run of taps
    tiers = tap_tiers(report.meta, report.taps)
    colors, labelled, start = {"float32": "red", "float16": "purple", "bfloat16": "brown"}, set(), 0
    for i in range(1, n + 1):
        if i == n or tiers[i] != tiers[start]:
            precision, tier, tol = tiers[start]
            label = None if tier in labelled else f"{tier} tier: rel L2 ≤ {tol:g}"
            labelled.add(tier)
            ax.hlines(tol, start - 0.5, i - 0.5, colors=colors[tier], linestyles="--", lw=1, label=label)
            ax.text((start + i - 1) / 2, tol * 1.25, f"{tap_component(report.taps[start])} {precision}",
                    ha="center", va="bottom", fontsize=7, color=colors[tier])
            start = i
    for mode in report.results:
        first = report.first_failure(mode)
        if first:
            ax.axvline(report.taps.index(first), color="orange", lw=1)
    step = max(1, n // 40)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([t.removeprefix("encoder.") for t in report.taps[::step]], rotation=70, fontsize=7)
    ax.set_ylabel("relative L2 error (MLX vs reference)")
    dtypes = ", ".join(f"{c} {d}" for c, d in report.meta["component_dtypes"].items())
    ax.set_title(f"{report.meta['audio']}: MLX ({dtypes}) vs reference float32; "
                 f"pass/fail at rel L2 ≤ {report.meta['tolerance']['value']:g}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)


def triplet(json_path: str | Path) -> tuple[Path, Path, Path]:
    """FILE.json and the FILE.md and FILE.png written beside it."""
    json_path = Path(json_path)
    return json_path, json_path.with_suffix(".md"), json_path.with_suffix(".png")


def write_triplet(json_path: str | Path, data: dict, markdown: str, plot_fn) -> list[Path]:
    """FILE.json, FILE.md and FILE.png side by side, each written atomically;
    `plot_fn(png_path)` draws the picture."""
    json_path, md, png = triplet(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, data)
    write_atomic(md, lambda p: Path(p).write_text(markdown, encoding="utf-8"))
    plot_fn(png)
    return [json_path, md, png]


def write(report: ParityReport, json_path: str | Path) -> list[Path]:
    return write_triplet(json_path, report.to_dict(), to_markdown(report), lambda png: plot(report, png))


def dump(report: ParityReport, out_dir: str | Path) -> list[Path]:
    """DIR/reference.npz and DIR/mlx.npz keyed by tap name (chained run)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arrays in (("reference", report.reference_taps), ("mlx", report.mlx_taps)):
        path = out_dir / f"{name}.npz"
        write_atomic(path, lambda p, a=arrays: np.savez(p, **a))
        paths.append(path)
    return paths

