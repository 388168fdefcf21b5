"""A synthetic PHI test set that no one hand-labels: report text with planted PHI of known spans.

    python bench/make_phi_set.py --out /tmp/phi-dev.jsonl --seed 1 [--n 1000] [--clinical DIR/train.jsonl]

Each line: ``{"id", "text", "spans": [{"start", "end", "type"}]}``; ``text[start:end]`` is planted PHI of
``type`` (NAME, DATE, TIME, ID, PHONE, EMAIL, ADDRESS, AGE). The values come from ``Faker`` (seeded;
US, British and Mexican locales, so names are not all of one origin); the forms are the ones radiology
reports use: signatures, "discussed with Dr. X at 14:32 on 3/4/2021", comparison dates, accession
numbers and MRNs, pagers and phones, ages (those under 90 are planted as text that must be kept).
Between the PHI sentences stand clinical sentences (from ``--clinical``, a split file, or built-in
ones with sizes, levels, laterality and drug names), whose words count against precision when touched.
Tune on one seed, report on another.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

from faker import Faker

# Clinical sentences with the tokens a de-identifier must leave alone.
CLINICAL = [
    "The heart is normal in size. The mediastinum is unremarkable.",
    "There is a 5 mm nodule in the right upper lobe, unchanged.",
    "Mild compression deformity of T11 and T12 vertebral bodies.",
    "Degenerative changes of the C-spine at C5-6 and C6-7.",
    "Left lower lobe consolidation measuring 2.3 x 1.5 cm.",
    "Status post CABG with intact median sternotomy wires.",
    "Right IJ central venous catheter tip at the cavoatrial junction.",
    "ET tube terminates 4 cm above the carina. NG tube in the stomach.",
    "Patient on heparin and Coumadin; no hemorrhage identified.",
    "No pneumothorax. Small bilateral pleural effusions, left greater than right.",
    "Calcified granuloma in the left mid lung zone. L4-L5 disc space narrowing.",
    "Stable appearance of the chest compared to prior. Lungs are clear.",
    "Metformin and lisinopril listed in the history. No focal airspace disease.",
    "Pacemaker leads in the right atrium and right ventricle. Heart size upper limits of normal.",
    "Emphysematous changes in the upper lobes. Hyperinflated lungs with flattened diaphragms.",
    "Grade 2 spondylolisthesis of L5 on S1. Aortic atherosclerotic calcification.",
    "Findings are consistent with CHF exacerbation. Cardiomegaly with pulmonary vascular congestion.",
    "Nodular opacity 1.2 cm, Lung-RADS 4A. Follow-up CT in 3 months recommended.",
    "The 62-year-old patient has a history of COPD. Chronic interstitial markings.",
    "A 45 year old with cough. No acute cardiopulmonary process.",
]
CREDENTIALS = ["MD", "M.D.", "DO", "NP", "PA-C", "RN", "PhD"]


def _date(fake: Faker, rng: random.Random) -> str:
    d = fake.date_between(start_date="-30y", end_date="today")
    fmt = rng.choice(
        [
            "%m/%d/%Y",
            "%-m/%-d/%Y",
            "%m/%d/%y",
            "%Y-%m-%d",
            "%B %-d, %Y",
            "%b %-d, %Y",
            "%-d %B %Y",
            "%d-%b-%Y",
            "%b %d %Y",
            "%B %Y",
            "%-m/%-d",
        ]  # fmt: skip
    )
    return d.strftime(fmt)


def _time(fake: Faker, rng: random.Random) -> str:
    t = fake.time_object()
    return t.strftime(rng.choice(["%H:%M", "%-I:%M %p", "%H%M hours", "%-I:%M p.m.", "%H:%M:%S", "%-I %p"]))


def _id(fake: Faker, rng: random.Random) -> str:
    return rng.choice(
        [fake.numerify("########"), fake.numerify("#######"), fake.bothify("??#######").upper(),
         fake.numerify("##-#####"), fake.bothify("ACC-########"), fake.ssn(), fake.numerify("E##########")]
    )  # fmt: skip


def _phone(fake: Faker, rng: random.Random) -> str:
    return rng.choice([fake.phone_number(), fake.numerify("#####"), fake.numerify("#-####"), fake.numerify("###-####")])


def _value(kind: str, form: str, fake: Faker, rng: random.Random) -> str:
    if kind == "NAME":
        return {
            "last": fake.last_name(),
            "full": f"{fake.first_name()} {fake.last_name()}",
            "mid": f"{fake.first_name()} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {fake.last_name()}",
            "lastfirst": f"{fake.last_name()}, {fake.first_name()}",
            "first": fake.first_name(),
            "upper": fake.last_name().upper(),
        }[form or "full"]
    if kind == "AGE":
        return str(rng.randint(90, 104))
    return {
        "DATE": _date,
        "TIME": _time,
        "ID": _id,
        "PHONE": _phone,
        "EMAIL": lambda f, r: f.email(),
        "ADDRESS": lambda f, r: f.street_address(),
    }[kind](fake, rng)


# Report sentences carrying PHI: {TYPE} or {TYPE:form} is planted; {cred} and {age} are not PHI.
TEMPLATES = [
    "Findings discussed with Dr. {NAME:last} at {TIME} on {DATE}.",
    "These findings were discussed with Dr. {NAME:full} by telephone at {TIME} on {DATE}.",
    "Critical result communicated to the referring physician, Dr. {NAME:last}, at {TIME}.",
    "Results were called to {NAME:full}, {cred}, at {TIME} on {DATE}, who acknowledged receipt.",
    "Discussed with {NAME:full} ({cred}) on {DATE} at {TIME}.",
    "Findings relayed to Dr. {NAME:mid} via pager {PHONE}.",
    "Dr. {NAME:last} was paged at {PHONE} on {DATE}.",
    "Electronically signed by: {NAME:full}, {cred} on {DATE} {TIME}",
    "Dictated by: Dr. {NAME:mid}. Transcribed by: {NAME:full}.",
    "I, {NAME:full}, {cred}, have personally reviewed the images and agree with the report.",
    "Attending radiologist: {NAME:full}. Resident: {NAME:full}, {cred}.",
    "Referring physician: Dr. {NAME:last}. Phone: {PHONE}.",
    "Patient name: {NAME:lastfirst}. MRN: {ID}. Accession #: {ID}.",
    "Accession number {ID}. Exam date {DATE}.",
    "COMPARISON: {DATE}.",
    "Comparison is made to the prior study dated {DATE} and CT from {DATE}.",
    "Compared with radiograph of {DATE} at {TIME}.",
    "The patient is a {AGE}-year-old woman with shortness of breath.",
    "{AGE} yo male, fall. Age {AGE}.",
    "History: {age}-year-old with cough; prior exam {DATE}.",
    "Mr. {NAME:last} was informed of the findings by Dr. {NAME:last}.",
    "Please call Dr. {NAME:last} at {PHONE} with questions.",
    "Report faxed to {PHONE}; contact {EMAIL}.",
    "Patient address: {ADDRESS}.",
    "DISCUSSED WITH DR. {NAME:upper} AT {TIME} ON {DATE}.",
    "Study ID {ID}; order {ID}.",
    "Preliminary read given to {NAME:full}, {cred}, ED, at {TIME}.",
    "Reviewed with the patient's nurse, {NAME:full}, on {DATE}.",
]
_FIELD = re.compile(r"\{(\w+)(?::(\w+))?\}")


def render(template: str, fake: Faker, rng: random.Random, offset: int) -> tuple[str, list[dict]]:
    """One sentence from a template and its planted spans (offsets shifted by ``offset``)."""
    out, spans, last = [], [], 0
    for m in _FIELD.finditer(template):
        out.append(template[last : m.start()])
        kind, form = m.group(1), m.group(2)
        if kind == "cred":
            out.append(rng.choice(CREDENTIALS))
        elif kind == "age":
            out.append(str(rng.randint(18, 89)))
        else:
            value = _value(kind, form, fake, rng)
            start = offset + sum(map(len, out))
            spans.append({"start": start, "end": start + len(value), "type": kind})
            out.append(value)
        last = m.end()
    out.append(template[last:])
    return "".join(out), spans


def make_phi_reports(n: int, seed: int, clinical: list[str] | None = None) -> list[dict]:
    """``n`` synthetic reports: clinical sentences with 1-3 PHI sentences among them, with their spans."""
    rng = random.Random(seed)
    fake = Faker(["en_US", "en_GB", "es_MX"])
    fake.seed_instance(seed)
    pool = clinical or CLINICAL
    reports = []
    for i in range(n):
        parts = [rng.choice(pool) for _ in range(rng.randint(1, 3))]
        phi = [rng.choice(TEMPLATES) for _ in range(rng.randint(1, 3))]
        order = parts + phi
        rng.shuffle(order)
        text, spans = "", []
        for piece in order:
            if text:
                text += " "
            if piece in phi:
                sentence, found = render(piece, fake, rng, len(text))
                spans += found
            else:
                sentence = piece
            text += sentence
        reports.append({"id": f"phi-{seed}-{i}", "text": text, "spans": spans})
    return reports


def clinical_sentences(path: Path, limit: int = 2000) -> list[str]:
    """Findings and impressions of a split file, as the clinical text between the PHI."""
    texts = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            texts += [t for t in (rec.get("findings"), rec.get("impression")) if t]
    return texts[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--clinical", type=Path, help="A split JSONL whose findings/impressions go between the PHI.")
    args = ap.parse_args()
    clinical = clinical_sentences(args.clinical) if args.clinical else None
    reports = make_phi_reports(args.n, args.seed, clinical)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in reports), encoding="utf-8")
    print(f"{len(reports)} reports, {sum(len(r['spans']) for r in reports)} planted spans -> {args.out}")


if __name__ == "__main__":
    main()
