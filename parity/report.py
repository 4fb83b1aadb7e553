"""Parity reports: JSON for machines, Markdown for people, a PNG of error by layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funasr_qwen4b.bundle import write_atomic, write_json_atomic

from .harness import ParityReport


def to_markdown(report: ParityReport) -> str:
    m = report.meta
    modes = list(report.results)
    lines = [
        "# Parity: MLX port vs reference",
        "",
        f"- audio: `{m['audio']}` ({m['seconds']} s); bundle `{m['bundle']}`",
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
    lines.append(f"- CTC ids identical: **{c['ids_equal']}** (frame argmax agreement {c['frame_agreement']:.4f}); "
                 f"MLX text: `{c['mlx']['text']}`; tags {c['mlx']['tags']}")
    if report.llm:
        t, lg = report.llm["tokens"], report.llm["logits"]
        first = "none" if t["first_difference"] is None else t["first_difference"]
        lines.append(f"- LLM generated ids identical: **{t['equal']}** ({len(t['mlx'])} MLX / {len(t['reference'])} "
                     f"reference tokens; first differing position: {first}); stop: {report.llm['stop']}")
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


def plot(report: ParityReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.taps)
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * n + 4), 4.5))
    x = np.arange(n)
    for mode, rs in report.results.items():
        ax.semilogy(x, [max(r.rel_l2, 1e-12) for r in rs], marker="o", ms=3, label=mode)
    tol = report.meta["tolerance"]["value"]
    ax.axhline(tol, color="red", ls="--", lw=1, label=f"tolerance {tol:g}")
    for mode in report.results:
        first = report.first_failure(mode)
        if first:
            ax.axvline(report.taps.index(first), color="orange", lw=1)
    step = max(1, n // 40)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([t.removeprefix("encoder.") for t in report.taps[::step]], rotation=70, fontsize=7)
    ax.set_ylabel("relative L2 error (MLX vs reference)")
    ax.set_title(f"{report.meta['audio']}: MLX {report.meta['dtype']} vs reference float32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)


def write_triplet(json_path: str | Path, data: dict, markdown: str, plot_fn) -> list[Path]:
    """FILE.json, FILE.md and FILE.png side by side, each written atomically;
    `plot_fn(png_path)` draws the picture."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(json_path, data)
    md, png = json_path.with_suffix(".md"), json_path.with_suffix(".png")
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

