"""``radllama generate``: impressions for one findings text or a whole split file."""

from __future__ import annotations

from pathlib import Path

import typer

from radllama.errors import RadLlamaError

BACKEND_HELP = "auto | transformers | vllm | llamacpp (auto: by a documented rule for the job; it says why)."


def generate_command(
    model: Path = typer.Option(..., "--model", help="Base model folder (HF format; a GGUF export for llamacpp)."),
    adapter: Path | None = typer.Option(None, "--adapter", help="LoRA adapter folder from `radllama train`."),
    findings: str | None = typer.Option(None, "--findings", help="One FINDINGS text; prints its impression."),
    input: Path | None = typer.Option(None, "--input", help="Split JSONL (records with findings)."),
    output: Path | None = typer.Option(None, "--output", help="Predictions JSONL (appended; a rerun resumes)."),
    system: str | None = typer.Option(None, "--system", help="System name in the predictions (default: folder)."),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    dtype: str = typer.Option("auto", "--dtype", help="auto | fp32 | bf16 | fp16 (auto: fp32 on CPU, bf16 on GPU)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Rows per model.generate call (transformers)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (transformers backend)."),
    decode: str = typer.Option("greedy", "--decode", help="greedy | mbr (minimum Bayes risk over samples)."),
    samples: int = typer.Option(8, "--samples", min=0, help="MBR: sampled candidates per case (+ greedy)."),
    mbr_temperature: float = typer.Option(0.7, "--mbr-temperature", min=0.0, help="MBR: sampling temperature."),
    clinical: float = typer.Option(
        0.0,
        "--clinical",
        min=0.0,
        help="MBR: utility lost per consistency flag (acute finding omitted, invented, on the wrong side; hedged "
        "finding dropped or asserted).",
    ),
    extractive: bool = typer.Option(
        False, "--extractive", help="MBR: the findings' sentences that state an acute finding compete as a candidate."
    ),
    retrieved: int | None = typer.Option(
        None,
        "--retrieved",
        min=0,
        help="MBR: this many nearest training impressions compete as candidates (default: those the prompt shows).",
    ),  # fmt: skip
    shard: str | None = typer.Option(
        None, "--shard", help="K/N: only shard K of N of --input (by a hash of each id); join with generate-merge."
    ),
    phi_guard: str = typer.Option(
        "redact",
        "--phi-guard",
        help="redact | flag | off: names, dates, IDs ... in an impression that its findings do not hold are "
        "replaced by [NAME], [DATE] ... (redact) or only counted (flag).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo --output when it was made from another model, split or setting."
    ),
    allow_other_base: bool = typer.Option(
        False, "--allow-other-base", help="Load --adapter on a base other than the one it was trained on."
    ),
) -> None:
    """Derive impressions from findings (greedy, or minimum Bayes risk with --decode mbr)."""
    if (findings is None) == (input is None):
        raise RadLlamaError("give either --findings TEXT or --input JSONL --output JSONL")
    if input is not None and output is None:
        raise RadLlamaError("--input needs --output")
    if shard is not None and input is None:
        raise RadLlamaError("--shard splits an --input file")
    from radllama.consistency import check
    from radllama.consistency import warnings as consistency_warnings
    from radllama.deid import check_guard_mode, guard_output
    from radllama.generate.impressions import (
        check_split,
        clean_findings,
        complete_impressions,
        count_todo,
        decoding_record,
        generate_file,
        predictions_fingerprint,
    )
    from radllama.generate.mbr import MbrSettings
    from radllama.generate.shards import parse_shard
    from radllama.inference import load_model, resolve_backend
    from radllama.provenance import discard_if_empty, reuse

    check_guard_mode(phi_guard)
    if decode not in ("greedy", "mbr"):
        raise RadLlamaError(f"--decode must be greedy or mbr, not {decode!r}")
    if decode == "greedy" and (clinical or extractive or retrieved is not None):
        raise RadLlamaError("--clinical, --extractive and --retrieved are MBR settings: add --decode mbr")
    part = parse_shard(shard) if shard is not None else None
    mbr = (MbrSettings(samples, mbr_temperature, retrieved=retrieved, clinical=clinical, extractive=extractive)
           if decode == "mbr" else None)  # fmt: skip
    name = system or (adapter or model).name
    fresh = False  # this run recorded a new fingerprint for --output
    if findings is not None:
        clean_findings(findings)  # fail on empty input before loading any weights
        chosen = resolve_backend(backend, 1, model_dir=model)
    else:
        if output.is_dir():
            raise RadLlamaError(f"--output {output} is a folder: give the predictions file, e.g. {output / 'x.jsonl'}")
        if not output.parent.exists():
            raise RadLlamaError(f"output folder {output.parent} does not exist")
        n_records = check_split(input)  # a bad split fails here, before anything is written
        chosen = resolve_backend(backend, n_records, model_dir=model)  # the whole job decides, not what is left
        wanted = predictions_fingerprint(
            input, name, model, adapter, chosen, dtype, decoding_record(max_new_tokens, mbr),
            batch_size=batch_size, device=device, phi_guard=phi_guard,
        )  # fmt: skip
        if part is not None:  # each shard's file says which it is (generate-merge checks them)
            wanted["shard"] = f"{part[0]}/{part[1]}"
        fresh = not reuse(output, wanted, on_change="redo" if overwrite else "error")
        if count_todo(input, output, part) == 0:
            typer.echo(f"0 new prediction(s): {output} is complete")
            return
    try:
        loaded = load_model(
            model, adapter, backend=chosen, dtype=dtype, device=device, batch_size=batch_size,
            allow_other_base=allow_other_base,
        )  # fmt: skip
        try:
            if findings is not None:
                text = complete_impressions(loaded, [findings], max_new_tokens, mbr=mbr)[0].text
                guarded = guard_output(text, findings, phi_guard)
                if guarded.found:
                    from radllama.progress import console

                    spans = ", ".join(f"{n} {kind}" for kind, n in sorted(guarded.found.items()))
                    verb = "replaced" if phi_guard == "redact" else "left in (--phi-guard flag)"
                    console.print(f"[yellow]warning:[/] {spans} not in the findings {verb}", highlight=False)
                typer.echo(guarded.text)
                # The consistency check goes to stderr: stdout stays the impression alone, for scripts.
                for warning in consistency_warnings(check(findings, guarded.text)):
                    typer.secho(f"warning: {warning}", fg="yellow", err=True)
                return
            n = generate_file(loaded, input, output, name, max_new_tokens, mbr, shard=part, phi_guard=phi_guard)
        finally:
            loaded.backend.close()
    except BaseException:
        if fresh:  # it failed before its first prediction: leave no fingerprint of an output that was never made
            discard_if_empty(output)
        raise
    typer.echo(f"{n} new prediction(s) written to {output}")


def merge_command(
    parts: list[Path] = typer.Argument(..., help="The predictions files of every shard (--shard 1/N .. N/N)."),
    input: Path = typer.Option(..., "--input", help="The split JSONL the shards were made from."),
    output: Path = typer.Option(..., "--output", help="One predictions JSONL, in the split's order."),
) -> None:
    """Join the predictions of `radllama generate --shard K/N` runs into one file (checked complete and alike)."""
    from radllama.generate.shards import merge_shards

    n = merge_shards(input, parts, output)
    typer.echo(f"{n} prediction(s) from {len(parts)} shard(s) written to {output}")
