"""From measured rows to the ratios the performance targets are stated in, a table and JSON.

Ratios are computed on one model shape (the large-vocabulary one when it was run). A ratio whose
inputs are missing (TRL not installed, a system that failed) is ``null`` with the reason in
``ratio_notes``, never a made-up number.
"""

from __future__ import annotations

from typing import Any

GIB = 2**30
# fp32 weights + gradients + AdamW's two moments: 4 x 4 bytes per parameter.
FULL_FT_FLOOR_BYTES_PER_PARAM = 16

TARGETS = {
    "train_tokens_per_s_vs_trl": ">= 1.3",
    "lora_peak_memory_vs_trl": "<= 0.6",
    "full_ft_memory_above_floor_vs_trl": "<= 0.5",
    "preference_step_vs_sft_step": "<= 1.1",
    "padding_free_speedup": ">= 1.5",
    "sampler_hf_vs_loop": ">= 4",
    "sampler_vllm_vs_hf": ">= 2",
    "grpo_update_tokens_per_s_vs_trl": ">= 1.3",
    "grpo_peak_memory_vs_trl": "<= 1.0",
}


def _find(rows: list[dict[str, Any]], shape: str, label: str) -> dict[str, Any] | None:
    for row in rows:
        if row.get("shape") == shape and row.get("label") == label and row.get("status") == "ok":
            return row
    return None


def memory_above_floor(row: dict[str, Any]) -> float:
    """Peak RSS minus the full fine-tuning floor (16 bytes per parameter), bytes."""
    return row["peak_rss_bytes"] - FULL_FT_FLOOR_BYTES_PER_PARAM * row["parameters"]


def compute_ratios(rows: list[dict[str, Any]], shape: str, sampler: dict[str, Any] | None
                   ) -> tuple[dict[str, float | None], dict[str, str]]:
    """The target ratios on ``shape`` from training rows (``to_dict`` of SystemResult plus
    ``shape``/``label``/``status``) and one sampler result (``run_sampler_bench``'s dict).

    Returns:
        (ratios by name, a reason for every ratio that is None).
    """
    ratios: dict[str, float | None] = {}
    notes: dict[str, str] = {}

    def get(label: str) -> dict[str, Any] | None:
        return _find(rows, shape, label)

    def packed_or_none(row: dict[str, Any] | None) -> dict[str, Any] | None:
        # A row whose trainer fell back to padding is not a padding-free measurement.
        return row if row is not None and row.get("notes", {}).get("packed", False) else None

    packed = packed_or_none(get("selm+padding-free"))
    selm_fast = packed or get("selm")
    selm_lora = packed_or_none(get("selm+lora+padding-free")) or get("selm+lora")

    def ratio(name: str, num: dict[str, Any] | None, den: dict[str, Any] | None, value, missing: str) -> None:
        if num is None or den is None:
            ratios[name] = None
            notes[name] = missing
        else:
            ratios[name] = float(value(num, den))

    ratio("train_tokens_per_s_vs_trl", selm_fast, get("trl"),
          lambda a, b: a["tokens_per_second"] / b["tokens_per_second"], "no successful selm and trl rows")
    ratio("lora_peak_memory_vs_trl", selm_lora, get("trl+lora"),
          lambda a, b: a["peak_rss_bytes"] / b["peak_rss_bytes"], "no successful selm+lora and trl+lora rows")
    ratio("full_ft_memory_above_floor_vs_trl", selm_fast, get("trl"),
          lambda a, b: memory_above_floor(a) / memory_above_floor(b), "no successful selm and trl rows")
    ratio("preference_step_vs_sft_step", selm_fast, get("sft"),
          lambda a, b: a["median_step_seconds"] / b["median_step_seconds"], "no successful selm and sft rows")
    ratio("padding_free_speedup", packed, get("selm"),
          lambda a, b: b["median_step_seconds"] / a["median_step_seconds"],
          "no successful selm+padding-free row that really packed, or no selm row")
    selm_grpo = packed_or_none(get("selm+grpo+padding-free")) or get("selm+grpo")
    ratio("grpo_update_tokens_per_s_vs_trl", selm_grpo, get("trl+grpo"),
          lambda a, b: a["tokens_per_second"] / b["tokens_per_second"], "no successful selm+grpo and trl+grpo rows")
    ratio("grpo_peak_memory_vs_trl", selm_grpo, get("trl+grpo"),
          lambda a, b: a["peak_rss_bytes"] / b["peak_rss_bytes"], "no successful selm+grpo and trl+grpo rows")

    backends = (sampler or {}).get("backends", {})

    def sampler_ratio(name: str, fast: str, slow: str) -> None:
        a, b = backends.get(fast, {}), backends.get(slow, {})
        if a.get("status") == "ok" and b.get("status") == "ok":
            ratios[name] = a["tokens_per_second"] / b["tokens_per_second"]
        else:
            ratios[name] = None
            bad = a if a.get("status") != "ok" else b
            notes[name] = f"{fast if bad is a else slow}: {bad.get('reason') or bad.get('error') or 'not run'}"

    sampler_ratio("sampler_hf_vs_loop", "hf", "loop")
    sampler_ratio("sampler_vllm_vs_hf", "vllm", "hf")
    return ratios, notes


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one line per training row (failed and skipped rows say why)."""
    head = ("| shape | system | s/step (median) | tokens/s | peak RSS GiB | above 16 B/param floor GiB "
            "| trainable params | steps timed |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in rows:
        if row.get("status") != "ok":
            why = row.get("reason") or row.get("error") or ""
            lines.append(f"| {row['shape']} | {row['label']} | {row.get('status')}: {why} | | | | | |")
            continue
        label = row["label"]
        # The 16 B/param floor is that of full fine-tuning; LoRA rows have no such floor.
        above = f"{memory_above_floor(row) / GIB:.2f}" if row["trainable_parameters"] == row["parameters"] else "-"
        if "padding-free" in label and not row.get("notes", {}).get("packed", True):
            label += " (fell back to padding)"
        lines.append(
            f"| {row['shape']} | {label} | {row['median_step_seconds']:.3f} | {row['tokens_per_second']:.1f} "
            f"| {row['peak_rss_bytes'] / GIB:.2f} | {above} "
            f"| {row['trainable_parameters']:,} | {len(row['step_seconds'])} |")
    return "\n".join(lines)


def format_sampler_table(sampler: dict[str, Any] | None) -> str:
    """A Markdown table of the sampler comparison."""
    if not sampler:
        return ""
    lines = [f"sampling: {sampler['prompts']} prompts x {sampler['max_new_tokens']} new tokens, greedy, "
             f"shape {sampler['shape']}",
             "| backend | seconds (median) | tokens/s | outputs equal to loop |", "|---|---|---|---|"]
    for name, r in sampler.get("backends", {}).items():
        if r.get("status") != "ok":
            lines.append(f"| {name} | {r.get('status')}: {r.get('reason') or r.get('error', '')} | | |")
        else:
            equal = r.get("outputs_equal_to_loop")
            lines.append(f"| {name} | {r['median_seconds']:.2f} | {r['tokens_per_second']:.1f} "
                         f"| {'-' if equal is None else f'{equal:.0%}'} |")
    return "\n".join(lines)


def format_ratios(ratios: dict[str, float | None], notes: dict[str, str]) -> str:
    """One line per ratio with its target, or the reason it is missing."""
    lines = []
    for name, value in ratios.items():
        shown = f"{value:.2f}" if value is not None else f"n/a ({notes.get(name, '')})"
        lines.append(f"{name:36s} {shown}   target {TARGETS.get(name, '-')}")
    return "\n".join(lines)
