"""Leaderboards (rich, markdown, CSV, JSON), bar charts with CIs, and the per-case HTML browser.

Everything here reads the metrics document of :mod:`radllama.evaluate.metrics` (plus the
per-case scores for the HTML page) and writes files atomically.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from rich.table import Table

from radllama.consistency import check
from radllama.evaluate.metrics import SUBSETS, SystemCases
from radllama.evaluate.paper_reported import DATASETS, PAPER, ROUGE_CAVEAT, expert_sample_rows, reported_rows
from radllama.io import atomic_write_bytes, atomic_write_json, atomic_write_text

# (metrics key, short column label) of the leaderboard, in display order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("rouge1", "R-1"),
    ("rouge2", "R-2"),
    ("rougeL", "R-L"),
    ("clinical_micro_f1", "F1-13 µ"),
    ("clinical_macro_f1", "F1-13 M"),
    ("clinical_micro_f1_5", "F1-5 µ"),
    ("clinical_macro_f1_5", "F1-5 M"),
    ("clinical_no_finding_f1", "No Finding F1"),
    ("words", "Words"),
    ("length_ratio", "Len ratio"),
)
CLINICAL_NOTE = (
    "Clinical: F1 of positive CheXpert mentions (rule labeller; uncertain counts as not positive in predictions and "
    "references alike): F1-13 over the 13 findings, F1-5 over atelectasis, cardiomegaly, consolidation, edema and "
    "pleural effusion; µ micro, M macro; No Finding on its own, in no average."
)
CHART_METRICS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "clinical_micro_f1", "clinical_micro_f1_5")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_ci(entry: dict | None, digits: int = 4) -> str:
    if not entry or entry.get("mean") is None:
        return "–"
    low, high = entry.get("ci95", [None, None])
    return f"{_fmt(entry['mean'], digits)} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def not_run_reason(entry: dict) -> str | None:
    """The reason a system was not run, or ``None`` for a scored system."""
    return entry.get("not_run") if isinstance(entry, dict) else None


def leaderboard_rows(metrics: dict, subset: str = "all") -> list[dict[str, Any]]:
    """Flat rows, one per system: numbers with CIs, or a ``not run: <reason>`` note.

    Scored systems come first, sorted by ROUGE-L (best first); not-run systems follow.
    """
    scored, not_run = [], []
    for name, entry in metrics.get("systems", {}).items():
        reason = not_run_reason(entry)
        if reason is not None:
            not_run.append({"system": name, "n": None, "status": f"not run: {reason}"})
            continue
        sub = entry.get(subset, {})
        row: dict[str, Any] = {"system": name, "n": sub.get("n", 0), "status": "ok"}
        for key, _ in COLUMNS:
            metric = sub.get(key) or {}
            row[key] = metric.get("mean")
            row[f"{key}_ci95"] = metric.get("ci95", [None, None])
        issues = metrics.get("issues", {}).get(name, {})
        row["failed"] = issues.get("failed", 0)
        row["empty"] = sub.get("empty_predictions", 0)
        scored.append(row)
    scored.sort(key=lambda r: -1.0 if r["rougeL"] is None else r["rougeL"], reverse=True)
    return scored + not_run


def rich_table(metrics: dict, subset: str = "all") -> Table:
    """The leaderboard of one subset as a rich table (mean [95% CI], n per row)."""
    table = Table(title=f"RadLlama leaderboard — subset '{subset}' ({metrics.get('scorer', '')})")
    table.add_column("System", style="bold", no_wrap=True)
    table.add_column("n", justify="right")
    for _, label in COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("fail/empty", justify="right")
    for row in leaderboard_rows(metrics, subset):
        if row["status"] != "ok":
            table.add_row(row["system"], "–", f"[yellow]{row['status']}[/]", *[""] * (len(COLUMNS) - 1), "")
            continue
        cells = []
        for key, _ in COLUMNS:
            digits = 1 if key == "words" else 2 if key == "length_ratio" else 4
            low, high = row[f"{key}_ci95"]
            # Mean on the first line, the CI (2 decimals) under it: keeps the table narrow.
            ci = "" if low is None else f"\n[dim][{low:.2f}, {high:.2f}][/]"
            cells.append(_fmt(row[key], digits) + ci)
        table.add_row(row["system"], str(row["n"]), *cells, f"{row['failed']}/{row['empty']}")
    return table


def leaderboard_markdown(metrics: dict) -> str:
    """Markdown leaderboard, one table per subset, mean [95% CI]."""
    lines = [f"Scorer: {metrics.get('scorer', '')}. {CLINICAL_NOTE}", ""]
    if metrics.get("paired_test"):
        lines += [f"Paired tests: {metrics['paired_test']}.", ""]
    for subset in SUBSETS:
        lines += [f"### Subset `{subset}`", ""]
        header = ["System", "n", *[label for _, label in COLUMNS]]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for row in leaderboard_rows(metrics, subset):
            if row["status"] != "ok":
                lines.append(f"| {row['system']} | – | {row['status']} |" + " |" * (len(COLUMNS) - 1))
                continue
            cells = [_fmt_ci({"mean": row[k], "ci95": row[f"{k}_ci95"]}) for k, _ in COLUMNS]
            lines.append(f"| {row['system']} | {row['n']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _per_observation_markdown(metrics) + _paired_markdown(metrics) + _model_metrics_markdown(metrics)
    return "\n".join(lines)


def _model_metrics_markdown(metrics: dict) -> list[str]:
    """BERTScore / RadGraph / CheXbert, when ``radllama eval --metrics`` asked for them."""
    names = list(metrics.get("model_metrics") or {})
    if not names:
        return []
    lines = ["### Model-based metrics (" + "; ".join(f"{k}: {v}" for k, v in metrics["model_metrics"].items()) + ")"]
    lines += ["", "| System | subset | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for name, entry in metrics.get("systems", {}).items():
        if not_run_reason(entry) is not None:
            continue
        for subset in SUBSETS:
            cells = [_fmt_ci(entry.get(subset, {}).get(n)) for n in names]
            lines.append(f"| {name} | {subset} | " + " | ".join(cells) + " |")
    return lines + [""]


def _per_observation_markdown(metrics: dict) -> list[str]:
    """F1 of positive mentions per observation (subset `all`), with the references' positives."""
    from radllama.labeller import OBSERVATIONS

    rows = [r for r in leaderboard_rows(metrics, "all") if r["status"] == "ok"]
    if not rows:
        return []
    lines = ["### Clinical F1 per observation (subset `all`; n pos = reference positives)", ""]
    lines.append("| System | " + " | ".join(OBSERVATIONS) + " |")
    lines.append("|" + "---|" * (len(OBSERVATIONS) + 1))
    for row in rows:
        per = metrics["systems"][row["system"]]["all"].get("clinical_per_observation", {})
        cells = [_fmt(per.get(o, {}).get("f1"), 3) for o in OBSERVATIONS]
        lines.append(f"| {row['system']} | " + " | ".join(cells) + " |")
    per = metrics["systems"][rows[0]["system"]]["all"].get("clinical_per_observation", {})
    counts = [str(per.get(o, {}).get("reference_positives", "–")) for o in OBSERVATIONS]
    lines += ["| n pos | " + " | ".join(counts) + " |", ""]
    return lines


def _paired_markdown(metrics: dict) -> list[str]:
    """Paired tests of every system against the reference system: difference, 95% CI, p."""
    paired = metrics.get("paired_vs_reference") or {}
    if not paired:
        return []
    ref = metrics.get("reference_system")
    lines = [f"### Paired tests against `{ref}` (same cases; difference = system − {ref})", ""]
    if metrics.get("multiplicity"):
        lines += [f"{metrics['multiplicity']}; p: unadjusted.", ""]
    lines.append("| System | subset | n | ΔR-L [95% CI] | p | p (Holm) | ΔF1-13 µ [95% CI] | p | p (Holm) |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for name, subsets in paired.items():
        for subset, tests in subsets.items():
            rl, cl = tests["rougeL"], tests.get("clinical_micro_f1")
            cells = [_diff_cell(rl), _fmt(rl["p_value"], 3), _fmt(rl.get("p_holm"), 3)]
            cells += [_diff_cell(cl), _fmt(cl["p_value"], 3), _fmt(cl.get("p_holm"), 3)] if cl else ["–"] * 3
            lines.append(f"| {name} | {subset} | {rl['n']} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _diff_cell(test: dict) -> str:
    diff, (low, high) = test.get("mean_diff"), test.get("ci95", [None, None])
    if diff is None or diff != diff:  # nan: no cases
        return "–"
    return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]"


def leaderboard_csv(metrics: dict) -> str:
    """CSV leaderboard: one line per (system, subset), CI bounds in their own columns."""
    buf = io.StringIO()
    fields = ["system", "subset", "status", "n"]
    for key, _ in COLUMNS:
        fields += [key, f"{key}_ci_low", f"{key}_ci_high"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for subset in SUBSETS:
        for row in leaderboard_rows(metrics, subset):
            out = {"system": row["system"], "subset": subset, "status": row["status"], "n": row["n"]}
            if row["status"] == "ok":
                for key, _ in COLUMNS:
                    out[key] = row[key]
                    out[f"{key}_ci_low"], out[f"{key}_ci_high"] = row[f"{key}_ci95"]
            writer.writerow(out)
    return buf.getvalue()


def paper_table_markdown(metrics: dict, dataset: str = "OpenI") -> str:
    """Table-2-style markdown (System | R-1 | R-2 | R-L on all and unseen) plus the paper's rows.

    The paper's rows sit in a separate, clearly labelled table: they were not measured here.
    """
    lines = [
        f"#### Measured here ({dataset} test split, {metrics.get('scorer', '')})",
        "",
        "| System | n | R-1 | R-2 | R-L | F1-13 µ | n unseen | R-1 unseen | R-2 unseen | R-L unseen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_rows = {r["system"]: r for r in leaderboard_rows(metrics, "all")}
    unseen_rows = {r["system"]: r for r in leaderboard_rows(metrics, "unseen")}
    for name, row in all_rows.items():
        if row["status"] != "ok":
            lines.append(f"| {name} | – | {row['status']} | | | | | | | |")
            continue
        u = unseen_rows[name]
        lines.append(
            f"| {name} | {row['n']} | {_fmt(row['rouge1'])} | {_fmt(row['rouge2'])} | {_fmt(row['rougeL'])} "
            f"| {_fmt(row['clinical_micro_f1'])} | {u['n']} | {_fmt(u['rouge1'])} | {_fmt(u['rouge2'])} "
            f"| {_fmt(u['rougeL'])} |"
        )
    lines += ["", f"F1-13 µ: {CLINICAL_NOTE[len('Clinical: ') :]}", "", *paper_reported_markdown(dataset)]
    return "\n".join(lines) + "\n"


def paper_reported_markdown(dataset: str = "OpenI") -> list[str]:
    """The paper's Table 2 rows for ``dataset`` and its Table 1, each labelled as not measured here."""
    rouge = ("rouge1", "rouge2", "rougeL")
    lines = [f"#### Reported by the paper, not measured here ({dataset}; {PAPER}, Table 2)", ""]
    if dataset not in DATASETS:
        return lines + [f"The paper reports no figures on {dataset}.", ""]
    lines += [ROUGE_CAVEAT, "", "| System | R-1 | R-2 | R-L |", "|---|---|---|---|"]
    lines += [f"| {r['system']} | " + " | ".join(_fmt(r[k]) for k in rouge) + " |" for r in reported_rows(dataset)]
    lines += [
        "",
        "#### Reported by the paper, not measured here (Table 1: the 10 examples its radiologists rated)",
        "",
        "| System | R-1 | R-2 | R-L |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['system']} | " + " | ".join(_fmt(r[k]) for k in rouge) + " |" for r in expert_sample_rows()]
    return lines


def write_charts(metrics: dict, out_dir: Path) -> list[Path]:
    """One PNG per metric: bars per system for `all` and `unseen`, 95% CI error bars."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in CHART_METRICS:
        rows = {s: [r for r in leaderboard_rows(metrics, s) if r["status"] == "ok"] for s in SUBSETS}
        names = [r["system"] for r in rows["all"]]
        if not names:
            continue
        fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(names) + 2), 4))
        x = np.arange(len(names))
        width = 0.4
        for k, subset in enumerate(SUBSETS):
            by_name = {r["system"]: r for r in rows[subset]}
            means, lows, highs = [], [], []
            for name in names:
                r = by_name.get(name, {})
                mean = r.get(metric)
                low, high = r.get(f"{metric}_ci95", [None, None])
                means.append(np.nan if mean is None else mean)
                lows.append(0.0 if mean is None or low is None else mean - low)
                highs.append(0.0 if mean is None or high is None else high - mean)
            ax.bar(x + (k - 0.5) * width, means, width, yerr=[lows, highs], capsize=3, label=subset)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel(dict(COLUMNS)[metric])
        ax.set_title(f"{dict(COLUMNS)[metric]} (mean, 95% bootstrap CI)")
        ax.legend()
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = out_dir / f"{metric}.png"
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


_CHECK_NAMES = {
    "omitted": "omitted",
    "unsupported": "unsupported",
    "side_mismatch": "wrong side",
    "hedge_dropped": "hedge dropped",
    "hedge_asserted": "hedge asserted",
}


def _check_cell(case: dict) -> str:
    """The decoder's own consistency check of an answer, in a few words ('' when consistent or not answered).

    The same rules chose the answer of a clinically guided MBR system, so this column is no judge of it: see
    :func:`_judge_cell`."""
    if case.get("status", "ok") != "ok":
        return ""
    result = check(case.get("findings") or "", case.get("prediction") or "")
    return " · ".join(f"{_CHECK_NAMES[k]}: {', '.join(result[k])}" for k in _CHECK_NAMES if result[k])


_NAMED = ("present", "uncertain")


@lru_cache(maxsize=65536)
def _judged(text: str, statuses: tuple[str, ...]) -> frozenset[str]:
    from radllama.evaluate.judge import findings  # the independent reader: loaded only when a page is made

    return frozenset(findings(text, statuses))


def _judge_cell(case: dict) -> str:
    """The independent reader's (:mod:`radllama.evaluate.judge`) reading of an answer against its findings:
    ``misses``: finding types the findings state (present or uncertain) that the answer does not name (present
    or uncertain); ``invents``: types the answer states as present that the findings do not state (present or
    uncertain). '' when there are none or the answer failed. Written apart from the rules any decoder uses."""
    if case.get("status", "ok") != "ok":
        return ""
    findings, answer = case.get("findings") or "", case.get("prediction") or ""
    stated = _judged(findings, _NAMED)
    misses = sorted(stated - _judged(answer, _NAMED))
    invents = sorted(_judged(answer, ("present",)) - stated)
    parts = [f"misses: {', '.join(misses)}"] if misses else []
    return "; ".join(parts + ([f"invents: {', '.join(invents)}"] if invents else []))


def html_cases(systems: Sequence[SystemCases]) -> list[dict]:
    """Merge systems' cases by id into rows for the HTML browser."""
    rows: dict[str, dict] = {}
    for system in systems:
        for case in system.cases:
            first = {"id": case["id"], "findings": case["findings"], "reference": case["reference"]}
            row = rows.setdefault(case["id"], {**first, "outputs": {}})
            row["outputs"][system.name] = {
                "prediction": case["prediction"],
                "rougeL": round(case["rougeL"], 4),
                "clinical": None if case["clinical_agreement"] is None else round(case["clinical_agreement"], 4),
                "labels": case["labels_prediction"],
                "status": case.get("status", "ok"),
                "judge": _judge_cell(case),
                "check": _check_cell(case),
            }
    for row in rows.values():
        label_sets = {tuple(o["labels"]) for o in row["outputs"].values()}
        row["disagree"] = len(label_sets) > 1
    return list(rows.values())


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RadLlama cases</title>
<style>
body{font-family:system-ui,sans-serif;margin:1rem;color:#222}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border:1px solid #ccc;padding:4px;vertical-align:top}
th{background:#f0f0f0;cursor:pointer;position:sticky;top:0}
th.sorted-asc::after{content:" \\25B2"} th.sorted-desc::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap}
.controls{margin-bottom:.5rem;display:flex;gap:1rem;align-items:center}
.muted{color:#777}
</style></head><body>
<h1>RadLlama — per-case comparison</h1>
<p class="muted">R-L: ROUGE-L F1 against the reference. Clin: agreement of clinical labels (F1 of the positive
CheXpert findings of the prediction against those of the reference, No Finding apart; 1 when both state none;
"not scored" when the reference states only findings outside CheXpert, such as fibrosis, emphysema, a hiatal hernia
or a granuloma, which the labels cannot judge).
Judge: the independent reader (<code>radllama.evaluate.judge</code>, written apart from the rules any decoder uses)
on the answer against its findings: <em>misses</em>, findings the findings state (present or uncertain) that the
answer does not name; <em>invents</em>, findings the answer states as present that the findings do not state.
Own check: the decoder's own consistency check (<code>radllama.consistency</code>: acute findings omitted, stated
without support, on the wrong side, hedged findings dropped or asserted), the same rules that chose the answer of a
clinically guided MBR system, so it is shown beside the judge, never instead of it.
A failed or missing answer is shown empty and scored as empty. Click a column header to sort.</p>
<div class="controls">
<input id="search" type="search" placeholder="search text…" size="40">
<label><input id="disagree" type="checkbox"> only cases where systems disagree (clinical labels)</label>
<span id="count" class="muted"></span>
</div>
<table id="cases"><thead></thead><tbody></tbody></table>
<script id="data" type="application/json">__DATA__</script>
<script>
const DATA = JSON.parse(document.getElementById('data').textContent);
const systems = DATA.systems;
const NOT_SCORED = -0.5;  // sorts between scored cases and missing ones
const cols = [{key:'id',label:'ID'},{key:'findings',label:'Findings'},{key:'reference',label:'Reference'}];
for (const s of systems) {
  cols.push({key:'pred:'+s,label:s});
  cols.push({key:'rl:'+s,label:'R-L '+s,num:true});
  cols.push({key:'cl:'+s,label:'Clin '+s,num:true});
  cols.push({key:'jd:'+s,label:'Judge '+s});
  cols.push({key:'ck:'+s,label:'Own check '+s});
}
function value(row,key){
  if(key.startsWith('pred:')){const o=row.outputs[key.slice(5)];
    return o?(o.status&&o.status!=='ok'?'['+o.status+', scored as empty]':o.prediction):'';}
  if(key.startsWith('rl:')){const o=row.outputs[key.slice(3)];return o?o.rougeL:-1;}
  if(key.startsWith('ck:')){const o=row.outputs[key.slice(3)];return o?o.check||'':'';}
  if(key.startsWith('jd:')){const o=row.outputs[key.slice(3)];return o?o.judge||'':'';}
  if(key.startsWith('cl:')){const o=row.outputs[key.slice(3)];return o?(o.clinical===null?NOT_SCORED:o.clinical):-1;}
  return row[key]??'';
}
let sortKey=null, sortDir=1;
const thead=document.querySelector('#cases thead'), tbody=document.querySelector('#cases tbody');
const tr=document.createElement('tr');
cols.forEach(c=>{const th=document.createElement('th');th.textContent=c.label;th.dataset.key=c.key;
  th.onclick=()=>{sortDir=(sortKey===c.key)?-sortDir:1;sortKey=c.key;render();};tr.appendChild(th);});
thead.appendChild(tr);
function render(){
  const q=document.getElementById('search').value.toLowerCase();
  const only=document.getElementById('disagree').checked;
  let rows=DATA.cases.filter(r=>(!only||r.disagree)&&(!q||JSON.stringify(r).toLowerCase().includes(q)));
  if(sortKey){const c=cols.find(c=>c.key===sortKey);
    rows=rows.slice().sort((a,b)=>{const x=value(a,sortKey),y=value(b,sortKey);
      return (c.num?(x-y):String(x).localeCompare(String(y)))*sortDir;});}
  thead.querySelectorAll('th').forEach(th=>{th.className=th.dataset.key===sortKey?(sortDir>0?'sorted-asc':'sorted-desc'):'';});
  tbody.replaceChildren(...rows.map(r=>{const tr=document.createElement('tr');tr.dataset.id=r.id;
    cols.forEach(c=>{const td=document.createElement('td');const v=value(r,c.key);
      if(c.num){td.className='num';td.textContent=v===NOT_SCORED?'not scored':v<0?'–':v.toFixed(3);}
      else{td.textContent=v;}
      tr.appendChild(td);});return tr;}));
  document.getElementById('count').textContent=rows.length+' of '+DATA.cases.length+' cases';
}
document.getElementById('search').oninput=render;
document.getElementById('disagree').onchange=render;
render();
</script></body></html>
"""


def cases_html(systems: Sequence[SystemCases]) -> str:
    """A self-contained page (inline CSS/JS, no network) to browse cases across systems."""
    data = {"systems": [s.name for s in systems], "cases": html_cases(systems)}
    return _HTML.replace("__DATA__", _script_json(data))


def _script_json(data: object) -> str:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u003c`` etc.

    Escaping only ``</`` is not enough: ``<!--<script>`` in the text switches the HTML parser into its
    "double escaped" state, and the element runs on past its ``</script>``. The JSON escapes parse
    back to the same text.
    """
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def write_reports(
    metrics: dict, out_dir: Path, systems: Sequence[SystemCases] = (), dataset: str = "OpenI"
) -> dict[str, Path]:
    """Write metrics.json, leaderboard.{md,csv,json}, charts/*.png and cases.html into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "metrics": out_dir / "metrics.json",
        "leaderboard_md": out_dir / "leaderboard.md",
        "leaderboard_csv": out_dir / "leaderboard.csv",
        "leaderboard_json": out_dir / "leaderboard.json",
        "paper_table": out_dir / "paper_table.md",
    }
    atomic_write_json(paths["metrics"], metrics)
    atomic_write_text(paths["leaderboard_md"], "# Leaderboard\n\n" + leaderboard_markdown(metrics))
    atomic_write_text(paths["leaderboard_csv"], leaderboard_csv(metrics))
    atomic_write_json(paths["leaderboard_json"], {s: leaderboard_rows(metrics, s) for s in SUBSETS})
    atomic_write_text(paths["paper_table"], paper_table_markdown(metrics, dataset))
    for i, png in enumerate(write_charts(metrics, out_dir / "charts")):
        paths[f"chart_{i}"] = png
    if systems:
        paths["cases_html"] = out_dir / "cases.html"
        atomic_write_text(paths["cases_html"], cases_html(systems))
    return paths
