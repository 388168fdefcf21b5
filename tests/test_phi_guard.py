"""The output guard: PHI-like spans in an answer that its own findings do not hold are redacted (or flagged)."""

from __future__ import annotations

import logging

import httpx
import pytest
from live_server import live_uvicorn
from test_serve_support import FINDINGS, tiny_service

from radllama.deid import GuardCounter, GuardResult, guard_output
from radllama.errors import RadLlamaError
from radllama.serve.app import create_app
from radllama.serve.service import ServeSettings

ANSWER = "Small effusion. Findings discussed with Dr. Quist at 14:32 on 3/4/2021."


def test_guard_redacts_a_name_not_in_the_findings_and_keeps_one_that_is() -> None:
    foreign = guard_output(ANSWER, "Small left effusion. No pneumothorax.")
    assert foreign.text == "Small effusion. Findings discussed with Dr. [NAME] at [TIME] on [DATE]."
    assert foreign.found == {"NAME": 1, "TIME": 1, "DATE": 1}
    own = guard_output(ANSWER, "Small effusion, discussed with DR.  QUIST at 14:32 on 3/4/2021 by phone.")
    assert own.text == ANSWER and own.found == {}
    partly = guard_output(ANSWER, "Effusion; the referring physician is Dr. Quist.")
    assert partly.text == "Small effusion. Findings discussed with Dr. Quist at [TIME] on [DATE]."


@pytest.mark.parametrize(
    ("answer", "findings"),
    [
        ("Discussed with Dr. Li.", "Lungs clear. Heart size within normal limits."),
        ("Discussed with Dr. Ng.", "The lung bases are clear."),
        ("Discussed with Dr. Ng.", "NG tube tip in the stomach."),  # capitals of a short word: an abbreviation
        ("Discussed with Dr. Young.", "A young patient with cough."),  # a name's case counts
    ],
)
def test_a_name_the_findings_hold_only_inside_a_word_or_in_another_case_is_redacted(answer: str, findings: str) -> None:
    result = guard_output(answer, findings)
    assert result.text == answer.rsplit(" ", 1)[0] + " [NAME]." and result.found == {"NAME": 1}


@pytest.mark.parametrize(
    "findings",
    ["Per Dr. Li, no change since the prior study.", "Findings were discussed with DR. LI.", "Dr. Li: clear lungs."],
)
def test_a_name_the_findings_hold_as_a_word_is_kept(findings: str) -> None:
    assert guard_output("Discussed with Dr. Li.", findings) == GuardResult("Discussed with Dr. Li.", {})


def test_dates_and_times_are_compared_as_whole_tokens() -> None:
    result = guard_output("Seen on 3/4/2021 at 4:32.", "Compared with 13/4/2021 at 14:32.")
    assert result.text == "Seen on [DATE] at [TIME]." and result.found == {"DATE": 1, "TIME": 1}
    assert guard_output("Seen on 3/4/2021 at 4:32.", "Prior 3 / 4 / 2021, at 4:32 PM.").found == {}


def test_flag_counts_without_changing_and_off_does_nothing() -> None:
    flagged = guard_output(ANSWER, "Small effusion.", "flag")
    assert flagged.text == ANSWER and flagged.found == {"NAME": 1, "TIME": 1, "DATE": 1}
    assert guard_output(ANSWER, "", "off").found == {}
    with pytest.raises(RadLlamaError, match="--phi-guard"):
        guard_output(ANSWER, "", "loud")


def test_counter_never_keeps_text() -> None:
    counter = GuardCounter("redact")
    texts, found = counter.apply([ANSWER, "No acute disease."], ["Effusion.", "Clear lungs."])
    assert texts[1] == "No acute disease." and "Quist" not in texts[0]
    assert found == {"NAME": 1, "TIME": 1, "DATE": 1}
    assert counter.stats() == {"mode": "redact", "checked": 2, "with_phi": 1, "spans": found}
    assert "Quist" not in repr(counter.__dict__)


def test_served_answers_pass_the_guard_and_health_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    service = tiny_service(ServeSettings())
    with live_uvicorn(create_app(service)) as url:
        r = httpx.post(f"{url}/v1/impressions", json={"findings": FINDINGS[:3], "max_tokens": 8}, timeout=60)
        assert r.status_code == 200
        guard = httpx.get(f"{url}/health").json()["phi_guard"]
        assert guard["mode"] == "redact" and guard["checked"] == 3
        # The random tiny model writes no names, so the service's guard is fed a leaking answer directly.
        with caplog.at_level(logging.INFO, logger="radllama.serve"):
            assert service.guard([ANSWER], ["Small effusion."]) == [
                "Small effusion. Findings discussed with Dr. [NAME] at [TIME] on [DATE]."
            ]
        guard = httpx.get(f"{url}/health").json()["phi_guard"]
        assert guard["checked"] == 4 and guard["with_phi"] == 1
        assert guard["spans"] == {"NAME": 1, "TIME": 1, "DATE": 1}
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "phi_guard redact: 3 span(s)" in logged and "Quist" not in logged and "14:32" not in logged


def test_presidio_is_imported_only_when_something_is_deidentified() -> None:
    """Importing presidio takes seconds: compare and the demo (guard off) must not pay for it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import radllama.generate.impressions, radllama.serve.service\n"
        "from radllama.deid import guard_output\n"
        "assert guard_output('Dr. Smith saw it.', 'x', 'off').text == 'Dr. Smith saw it.'\n"
        "assert 'presidio_analyzer' not in sys.modules, 'imported with the guard off'\n"
        "assert guard_output('Discussed with Dr. Smith.', 'No effusion.', 'redact').found\n"
        "assert 'presidio_analyzer' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
