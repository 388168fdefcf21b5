"""``radllama compare``: run many systems on one test split, resumably, then score and report.

A YAML config names the split and the systems (see ``configs/compare/*.yaml``). Kinds:

- ``baseline``: a non-neural baseline from :mod:`radllama.baselines`, fitted on train.
- ``local``: a local Hugging Face model folder (+ optional LoRA adapter).
- ``openai``: any OpenAI-compatible endpoint; the key is read from the environment
  variable named by ``api_key_env`` (never from the file). ``prompt: zero-shot`` sends the
  paper's instruction; ``prompt: few-shot`` adds ``k`` similar *training* cases as turns.
  Report text goes to ``base_url``: an address off this machine is refused unless the
  system says ``allow_remote: true``, and every recipient is printed before the first request.
- ``not_run``: a system that cannot run here; its leaderboard row says why, never a number.

A ``local`` system whose ``model.path`` does not exist, or an ``openai`` system whose key
variable is unset, becomes ``not_run`` with that reason. Predictions are cached per system
in ``OUT/predictions/<system>.jsonl``: a rerun skips finished ids, redoes a truncated last
line and retries cases recorded as failed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from radllama.consistency import FIELDS as CONSISTENCY_FIELDS
from radllama.consistency import check
from radllama.errors import RadLlamaError
from radllama.io import JsonlAppender, atomic_write_text, ensure_writable_dir, iter_jsonl, read_jsonl, write_jsonl
from radllama.progress import console, progress_bar
from radllama.provenance import reuse

KINDS = ("baseline", "local", "openai", "not_run")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ----------------------------------------------------------------------------- config


def load_config(path: Path) -> dict[str, Any]:
    """Read and validate a comparison config; every mistake is one clear RadLlamaError."""
    path = Path(path)
    if not path.is_file():
        raise RadLlamaError(f"{path}: no such config file")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RadLlamaError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise RadLlamaError(f"{path}: expected a mapping at the top level")
    split = cfg.get("split")
    if not isinstance(split, dict) or "test" not in split:
        raise RadLlamaError(f"{path}: 'split' must give at least 'test' (and 'train' for baselines/few-shot)")
    systems = cfg.get("systems")
    if not isinstance(systems, list) or not systems:
        raise RadLlamaError(f"{path}: 'systems' must be a non-empty list")
    names: set[str] = set()
    for i, sys_cfg in enumerate(systems, 1):
        if not isinstance(sys_cfg, dict) or "name" not in sys_cfg or "kind" not in sys_cfg:
            raise RadLlamaError(f"{path}: system #{i} needs 'name' and 'kind'")
        name, kind = str(sys_cfg["name"]), sys_cfg["kind"]
        if not _SAFE_NAME.match(name):
            raise RadLlamaError(f"{path}: system name {name!r}: use letters, digits, '.', '_', '-'")
        if name in names:
            raise RadLlamaError(f"{path}: system name {name!r} appears twice")
        names.add(name)
        if kind not in KINDS:
            raise RadLlamaError(f"{path}: system {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "openai" and sys_cfg.get("prompt", "zero-shot") not in ("zero-shot", "few-shot"):
            raise RadLlamaError(f"{path}: system {name!r}: prompt must be 'zero-shot' or 'few-shot'")
        if kind == "openai" and ("api_key" in sys_cfg):
            raise RadLlamaError(f"{path}: system {name!r}: no API key in the file; name its env var in 'api_key_env'")
        if kind == "openai" and "backoff_s" in sys_cfg:
            raise RadLlamaError(f"{path}: system {name!r}: backoff_s is not a setting: the openai client backs off "
                                "itself (honouring Retry-After); set 'retries' only")  # fmt: skip
        if kind == "openai" and not isinstance(sys_cfg.get("allow_remote", False), bool):
            raise RadLlamaError(f"{path}: system {name!r}: allow_remote must be true or false")
    return cfg


# The openai client's own default when neither base_url nor OPENAI_BASE_URL is given.
OPENAI_DEFAULT_URL = "https://api.openai.com/v1"


def openai_url(sys_cfg: dict[str, Any]) -> str:
    """The URL an ``openai`` system sends report text to (what the client would pick), made explicit."""
    return str(sys_cfg.get("base_url") or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_URL)


def check_recipients(systems: Sequence[dict[str, Any]]) -> list[str]:
    """One line per ``openai`` system about to run: who receives report text (findings of every case).

    Raises RadLlamaError for a system whose URL is not on this machine (loopback) unless its
    config says ``allow_remote: true``: report text must not leave the hospital by default.
    """
    from urllib.parse import urlsplit

    from radllama.net import is_loopback

    lines = []
    for sys_cfg in systems:
        url = openai_url(sys_cfg)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RadLlamaError(f"system {sys_cfg['name']!r}: base_url {url!r} is not an http(s) URL")
        local = is_loopback(parts.hostname)
        if not local and sys_cfg.get("allow_remote") is not True:
            raise RadLlamaError(
                f"system {sys_cfg['name']!r} would send report text to {parts.hostname}, off this machine; "
                "set 'allow_remote: true' for it in the config if that is intended"
            )
        where = "this machine" if local else "REMOTE, allow_remote: true"
        lines.append(f"{sys_cfg['name']} → {url} (model {sys_cfg.get('model')}; {where})")
    return lines


def not_run_reason(sys_cfg: dict[str, Any]) -> str | None:
    """Why a system cannot run here (None when it can)."""
    kind = sys_cfg["kind"]
    if kind == "not_run":
        return str(sys_cfg.get("reason") or "marked not_run in the config")
    if kind == "local":
        model = sys_cfg.get("model") or {}
        path = model.get("path") if isinstance(model, dict) else model
        if not path or not Path(path).exists():
            return f"weights not found at {path}"
        adapter = model.get("adapter") if isinstance(model, dict) else None
        if adapter and not Path(adapter).exists():
            return f"adapter not found at {adapter}"
    if kind == "openai":
        env = sys_cfg.get("api_key_env")
        if not env or not os.environ.get(env):
            return f"API key variable {env or '(api_key_env unset)'} is not set"
        if not sys_cfg.get("model"):
            return "no model name given"
    return None


# ----------------------------------------------------------------------------- runners


def _prediction(rec: dict, system: str, prediction: str = "", error: str | None = None) -> dict:
    line = {
        "id": str(rec["id"]),
        "system": system,
        "findings": rec.get("findings", ""),
        "reference": rec.get("impression", ""),
        "prediction": prediction,
        # The consistency check of every answer; a failed one has none (it is retried, not read).
        **(dict.fromkeys(CONSISTENCY_FIELDS) if error else check(rec.get("findings", ""), prediction)),
        "seen_findings": rec.get("seen_findings"),
        "status": "failed" if error else "ok",
    }
    if error:
        line["error"] = error
    return line


def _drop_failed(path: Path) -> None:
    """Rewrite a cache without its failed lines so a rerun retries them (keeps the first ok line)."""
    if not path.exists():
        return
    with JsonlAppender(path, keep=True) as probe:  # also cuts a truncated tail
        kept = list(probe.kept.values())
    if any(r.get("status") == "failed" for r in kept):
        write_jsonl(path, [r for r in kept if r.get("status") != "failed"])


def run_baseline(sys_cfg: dict, train: Sequence[dict], todo: Sequence[dict], out: JsonlAppender) -> None:
    """Fit a baseline on train and write its predictions."""
    from radllama.baselines import make_baseline

    if not train:
        raise RadLlamaError(f"system {sys_cfg['name']!r}: baselines need 'split.train'")
    baseline = make_baseline(str(sys_cfg.get("baseline", sys_cfg["name"]))).fit(train)
    for rec, pred in zip(todo, baseline.predict([r["findings"] for r in todo]), strict=True):
        out.write(_prediction(rec, sys_cfg["name"], pred))


def run_local(sys_cfg: dict, test_path: Path, pred_path: Path) -> None:
    """Generate with a local model (+ adapter) on its resolved ``backend``; resumes from the same cache."""
    from radllama.generate.impressions import count_todo, generate_file
    from radllama.inference import load_model

    if count_todo(test_path, pred_path) == 0:
        return  # every case is cached: no weights to load
    model = _local_model(sys_cfg)
    loaded = load_model(
        model["path"],
        model.get("adapter"),
        backend=sys_cfg["backend"],
        dtype=str(sys_cfg.get("dtype", "auto")),
        batch_size=int(sys_cfg.get("batch_size", 32)),
        trust_remote_code=bool(model.get("trust_remote_code", False)),
    )
    try:
        generate_file(loaded, test_path, pred_path, sys_cfg["name"], int(sys_cfg.get("max_new_tokens", 128)),
                      mbr_settings(sys_cfg))  # fmt: skip
    finally:
        loaded.backend.close()


def mbr_settings(sys_cfg: dict) -> Any:
    """``decode: mbr`` (with optional ``samples``, ``temperature``) of a local system, else None (greedy)."""
    from radllama.generate.mbr import MbrSettings

    decode = sys_cfg.get("decode", "greedy")
    if decode == "greedy":
        return None
    if decode != "mbr":
        raise RadLlamaError(f"system {sys_cfg['name']!r}: decode must be greedy or mbr, not {decode!r}")
    return MbrSettings(
        samples=int(sys_cfg.get("samples", 8)),
        temperature=float(sys_cfg.get("temperature", 0.7)),
        retrieved=None if sys_cfg.get("retrieved") is None else int(sys_cfg["retrieved"]),
        clinical=float(sys_cfg.get("clinical", 0.0)),
        extractive=bool(sys_cfg.get("extractive", False)),
    )


def _local_model(sys_cfg: dict) -> dict:
    return sys_cfg["model"] if isinstance(sys_cfg["model"], dict) else {"path": sys_cfg["model"]}


# Settings of a remote system that do not change its answers (so do not invalidate its cache).
_NOT_IN_FINGERPRINT = {"api_key_env", "timeout_s", "concurrency", "max_retries", "retries", "allow_remote"}


def system_fingerprint(sys_cfg: dict, split: Path, train: str | None) -> dict:
    """What a system's predictions depend on (see :mod:`radllama.provenance`)."""
    from radllama.provenance import file_digest, versions

    if sys_cfg["kind"] == "local":
        from radllama.generate.impressions import decoding_record, predictions_fingerprint

        model = _local_model(sys_cfg)
        decoding = decoding_record(int(sys_cfg.get("max_new_tokens", 128)), mbr_settings(sys_cfg))
        return predictions_fingerprint(split, sys_cfg["name"], model["path"], model.get("adapter"), sys_cfg["backend"],
                                       str(sys_cfg.get("dtype", "auto")), decoding,
                                       batch_size=int(sys_cfg.get("batch_size", 32)), device=None)  # fmt: skip
    settings = {k: v for k, v in sys_cfg.items() if k not in _NOT_IN_FINGERPRINT}
    return {"split": file_digest(split), "train": file_digest(train) if train else None, "system": settings,
            "versions": versions()}  # fmt: skip


def openai_messages(
    findings: str, examples: Sequence[dict] = (), system_prompt: str | None = None
) -> list[dict[str, str]]:
    """Chat messages: the paper's instruction, optional worked examples as earlier turns."""
    from radllama.prompts import PromptStyle

    style = PromptStyle() if system_prompt is None else PromptStyle(system=system_prompt or None)
    msgs = [{"role": "system", "content": style.system}] if style.system else []
    for ex in examples:
        msgs.append({"role": "user", "content": style.user_message(ex["findings"])})
        msgs.append({"role": "assistant", "content": ex["impression"]})
    msgs.append({"role": "user", "content": style.user_message(findings)})
    return msgs


def run_openai(sys_cfg: dict, train: Sequence[dict], todo: Sequence[dict], out: JsonlAppender) -> None:
    """Query an OpenAI-compatible endpoint for each case; a case that still fails is recorded failed."""
    import openai

    name = sys_cfg["name"]
    # The client retries timeouts, dropped connections, 408/409/429 and 5xx itself, with
    # exponential backoff that honours the server's Retry-After; what still fails is recorded.
    client = openai.OpenAI(
        base_url=openai_url(sys_cfg),  # the URL check_recipients checked, not a later default
        api_key=os.environ[sys_cfg["api_key_env"]],
        timeout=float(sys_cfg.get("timeout_s", 60)),
        max_retries=int(sys_cfg.get("retries", 4)),
    )
    examples: list[list[dict]] = [[] for _ in todo]
    if sys_cfg.get("prompt", "zero-shot") == "few-shot":
        from radllama.retrieval import TfidfRetriever

        if not train:
            raise RadLlamaError(f"system {name!r}: few-shot prompting needs 'split.train'")
        # The index holds train only, so no test case can be shown its own answer.
        examples = TfidfRetriever(train).query([r["findings"] for r in todo], k=int(sys_cfg.get("k", 3)))

    def one(i: int) -> dict:
        rec = todo[i]
        messages = openai_messages(rec["findings"], examples[i], sys_cfg.get("system_prompt"))

        def request() -> str:
            resp = client.chat.completions.create(
                model=sys_cfg["model"],
                messages=messages,
                temperature=float(sys_cfg.get("temperature", 0.0)),
                max_tokens=int(sys_cfg.get("max_tokens", 128)),
            )
            text = resp.choices[0].message.content if resp.choices else None
            if text is None:
                raise ValueError("response has no message content")
            return text.strip()

        try:
            text = request()
            return _prediction(rec, name, text)
        except Exception as exc:  # recorded, never silently empty
            return _prediction(rec, name, error=f"{type(exc).__name__}: {str(exc)[:300]}")

    with progress_bar() as bar, ThreadPoolExecutor(max_workers=int(sys_cfg.get("concurrency", 4))) as pool:
        task = bar.add_task(f"{name}", total=len(todo))
        for line in pool.map(one, range(len(todo))):
            out.write(line)  # main thread only: one writer per file
            bar.advance(task)


# ----------------------------------------------------------------------------- driver


def run_comparison(
    config_path: Path,
    out_dir: Path | None = None,
    limit: int | None = None,
    backend: str | None = None,
    on_change: str = "error",
) -> dict[str, Any]:
    """Run every runnable system of a config, then write metrics, leaderboards, charts, HTML.

    ``backend`` is the inference backend of local systems whose config names none. A system's
    cached predictions are reused only when their provenance matches this run; otherwise
    ``on_change`` says what happens: ``"error"`` (stop, naming what differs) or ``"redo"``.

    Returns ``{"out": Path, "metrics": dict, "paths": dict}``.
    """
    from radllama.evaluate.metrics import metrics_from_cases, score_systems
    from radllama.evaluate.report import write_reports

    cfg = load_config(Path(config_path))
    runnable = [s for s in cfg["systems"] if s["kind"] == "openai" and not_run_reason(s) is None]
    recipients = check_recipients(runnable)  # before anything is written or sent: refuse, or name them
    if recipients:
        console.print("report text will be sent to: " + "; ".join(recipients), highlight=False)
    out = Path(out_dir or cfg.get("out") or "runs/compare")
    ensure_writable_dir(out / "predictions")
    test = read_jsonl(Path(cfg["split"]["test"]))
    whole_split = len(test)  # sizes `--backend auto` the same with or without --limit
    train_path = cfg["split"].get("train")
    overlap = _check_train_overlap(train_path, test)
    if limit is not None:
        if limit < 1:
            raise RadLlamaError("--limit must be at least 1")
        test = test[:limit]
    if not test:
        raise RadLlamaError(f"{cfg['split']['test']}: the test split is empty")
    test_path = out / "test_cases.jsonl"  # the (possibly limited) cases every system sees
    write_jsonl(test_path, test)
    atomic_write_text(out / "config.resolved.yaml", yaml.safe_dump({**cfg, "out": str(out), "limit": limit}))

    ran, skipped = predict_systems(cfg["systems"], test, test_path, Path(cfg["split"]["test"]), train_path, out,
                                   whole_split, backend, on_change)  # fmt: skip

    reference = cfg.get("reference_system")
    if reference is not None and reference not in ran:
        console.print(f"[yellow]reference system {reference!r} did not run; no paired tests[/]")
        reference = None
    boot = cfg.get("bootstrap") or {}
    metrics: dict[str, Any]
    systems = score_systems(ran, test) if ran else []
    if systems:
        metrics = metrics_from_cases(systems, reference, int(boot.get("resamples", 1000)), int(boot.get("seed", 0)))
    else:
        metrics = {"scorer": "rouge-score 0.1.2, stemmer on", "systems": {}, "issues": {}}
    metrics["systems"].update(skipped)
    metrics["config"] = str(config_path)
    if overlap is not None:
        metrics["train_test_overlap"] = overlap
    paths = write_reports(metrics, out, systems, dataset=str(cfg.get("dataset", "OpenI")))
    return {"out": out, "metrics": metrics, "paths": paths}


def predict_systems(
    systems: Sequence[dict],
    cases: Sequence[dict],
    cases_path: Path,
    split_path: Path,
    train_path: str | None,
    out: Path,
    whole_split: int | None = None,
    backend: str | None = None,
    on_change: str = "error",
) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Each runnable system's predictions for ``cases`` (written to ``cases_path``), cached in
    ``out/predictions/<system>.jsonl`` under the provenance of ``split_path``.

    Returns ``(ran, skipped)``: per system its predictions on these cases, and the systems not run (why).
    """
    train = read_jsonl(Path(train_path)) if train_path else []
    ensure_writable_dir(out / "predictions")
    ran: dict[str, list[dict]] = {}
    skipped: dict[str, dict] = {}
    test_ids = {str(r["id"]) for r in cases}
    for sys_cfg in systems:
        name = sys_cfg["name"]
        reason = not_run_reason(sys_cfg)
        if reason is not None:
            console.print(f"[yellow]{name}[/]: not run ({reason})")
            skipped[name] = {"not_run": reason, **_describe(sys_cfg)}
            continue
        pred_path = out / "predictions" / f"{name}.jsonl"
        if sys_cfg["kind"] == "local":
            _check_retrieval_index(sys_cfg, cases)
            from radllama.inference import resolve_backend

            requested = sys_cfg.get("backend") or backend or "auto"
            chosen = resolve_backend(requested, whole_split or len(cases), model_dir=_local_model(sys_cfg)["path"])
            sys_cfg = {**sys_cfg, "backend": chosen}
        reuse(pred_path, system_fingerprint(sys_cfg, split_path, train_path), on_change=on_change)
        _drop_failed(pred_path)
        if sys_cfg["kind"] == "local":
            run_local(sys_cfg, cases_path, pred_path)
        else:
            with JsonlAppender(pred_path) as appender:
                todo = [r for r in cases if str(r["id"]) not in appender.done]
                if todo:
                    console.print(f"{name}: {len(todo)} case(s) to run, {len(cases) - len(todo)} cached")
                    runner = run_baseline if sys_cfg["kind"] == "baseline" else run_openai
                    runner(sys_cfg, train, todo, appender)
        # Only these cases (a --limit run may sit on a larger cache).
        ran[name] = [r for r in read_jsonl(pred_path) if str(r.get("id")) in test_ids]
    return ran, skipped


def _check_train_overlap(train_path: str | None, test: Sequence[dict]) -> dict[str, int] | None:
    """Refuse a test case that is also in split.train; say how many test findings texts are in train."""
    from radllama.data.splits import check_overlap

    if not train_path:
        return None
    overlap = check_overlap(iter_jsonl(Path(train_path)), test, "split.train")
    if overlap["shared_findings"]:
        console.print(
            f"[yellow]note:[/] {overlap['shared_findings']} of {len(test)} test findings texts also occur in "
            "split.train (expected for templated reports such as OpenI; the `unseen` subset leaves them out)",
            highlight=False,
        )
    return overlap


def _check_retrieval_index(sys_cfg: dict, cases: Sequence[dict]) -> None:
    """A local model retrieves examples from the index its training saved: no test case may be in it."""
    from radllama.data.splits import check_overlap
    from radllama.models.loading import RETRIEVAL_INDEX_FILE

    model = _local_model(sys_cfg)
    for folder in (model.get("adapter"), model["path"]):
        index = Path(folder) / RETRIEVAL_INDEX_FILE if folder else None
        if index is not None and index.is_file():
            try:
                check_overlap(iter_jsonl(index), cases, str(index))
            except RadLlamaError as exc:
                raise RadLlamaError(f"{sys_cfg['name']}: {exc}") from None
            return  # the adapter's index is the one used (models.loading.load_prompting)


def _describe(sys_cfg: dict) -> dict[str, Any]:
    """Public identity of a system for the leaderboard (checkpoint/API name, prompt format)."""
    keys = ("kind", "checkpoint", "model", "base_url", "prompt", "prompt_format", "note")
    out = {k: sys_cfg[k] for k in keys if k in sys_cfg}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: str(v) for k, v in out["model"].items()}
    return out
