"""A whole rater session in headless Chromium, then `radllama review report` shows those exact scores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from playwright.sync_api import expect
from test_review_support import add_rater, candidates, live_server, make_study
from typer.testing import CliRunner

from radllama.cli import app
from radllama.review import store

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def case2_score(slot: int, k: int) -> int:
    """The score the test clicks on case 2 for display slot ``slot`` and criterion index ``k``."""
    return 1 + (slot + 2 * k) % 5


def wait_saved(page) -> None:  # noqa: ANN001 (playwright Page)
    # Locator assertions, not wait_for_function: the page's CSP (rightly) forbids string eval.
    expect(page.locator(".status.saving, .status.error")).to_have_count(0)
    expect(page.locator(".status.saved").first).to_be_visible()


def wait_case(page, n: int) -> None:  # noqa: ANN001
    expect(page.locator("#case-num")).to_have_text(str(n))


@pytest.mark.slow
def test_rater_session_in_chromium(tmp_path: Path, chromium) -> None:  # noqa: ANN001
    study = make_study(tmp_path, n_cases=2)
    token = add_rater(study, "Dr Test")
    rows = candidates(study)
    n_cands = sum(1 for r in rows if r["case_position"] == 1)
    ARTIFACTS.mkdir(exist_ok=True)

    with live_server(study) as base:
        context = chromium.new_context(viewport={"width": 1100, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base}/r/{token}")

        # Case 1 by keyboard only: focus starts on the first scale; each digit scores and moves on.
        page.wait_for_selector("#case-view:not([hidden])")
        assert page.inner_text("#case-num") == "1"
        assert page.inner_text("#progress-text") == "0 / 2 cases complete"
        for _ in range(n_cands * len(store.CRITERIA)):
            page.keyboard.press("4")
        wait_saved(page)
        expect(page.locator("#progress-text")).to_have_text("1 / 2 cases complete")
        page.keyboard.press("n")

        # Case 2 with the mouse (and one arrow key), different score per candidate and criterion.
        wait_case(page, 2)
        cards = page.locator(".candidate")
        assert cards.count() == n_cands
        for slot in range(n_cands):
            for k, crit in enumerate(store.CRITERIA):
                score = case2_score(slot, k)
                if slot == 0 and k == 0 and score < 5:
                    # Keyboard: click one less, then ArrowRight moves the radio selection up by one.
                    cards.nth(0).locator(f"fieldset[data-criterion={crit}] .opt").nth(score - 2).click()
                    page.keyboard.press("ArrowRight")
                else:
                    cards.nth(slot).locator(f"fieldset[data-criterion={crit}] .opt").nth(score - 1).click()
        cards.nth(1).locator("textarea").fill("Omits the effusion size.")
        page.locator("#case-num").click()  # blur saves the comment
        wait_saved(page)
        expect(page.locator("#progress-text")).to_have_text("2 / 2 cases complete")
        page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

        # Reload: the page comes back on case 2 with every answer kept.
        page.reload()
        page.wait_for_selector("#case-view:not([hidden])")
        assert page.inner_text("#case-num") == "2"
        for slot in range(n_cands):
            for k, crit in enumerate(store.CRITERIA):
                checked = cards.nth(slot).locator(f"fieldset[data-criterion={crit}] input:checked")
                assert checked.get_attribute("value") == str(case2_score(slot, k))
        assert cards.nth(1).locator("textarea").input_value() == "Omits the effusion size."
        page.keyboard.press("p")
        wait_case(page, 1)
        assert page.locator("#candidates input:checked").count() == n_cands * len(store.CRITERIA)
        checked = page.locator("#candidates input:checked")
        assert {checked.nth(i).get_attribute("value") for i in range(checked.count())} == {"4"}

        # Finish from the last case: the done screen.
        page.locator(".pill").nth(1).click()
        wait_case(page, 2)
        page.click("#next")
        page.wait_for_selector("#done-view:not([hidden])")
        page.screenshot(path=str(ARTIFACTS / "review-done.png"))
        page.goto(f"{base}/r/{token}")  # a new visit after finishing lands on the done screen
        page.wait_for_selector("#done-view:not([hidden])")
        html = page.content()
        # A finished review is shown read-only (the server would answer 409 anyway).
        page.click("#review-again")
        wait_case(page, 1)
        radios = page.locator("#candidates input[type=radio]")
        assert radios.count() == n_cands * len(store.CRITERIA) * 5
        expect(page.locator("#candidates input[type=radio]:not([disabled])")).to_have_count(0)
        expect(page.locator("#candidates textarea:not([readonly])")).to_have_count(0)
        expect(page.locator("#case-status")).to_contain_text("not editable")
        context.close()
    assert errors == []
    assert all(r["system"] not in html for r in rows)

    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["review", "report", str(study), "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    for r in (r for r in rows if r["case_position"] == 2):
        for k, crit in enumerate(store.CRITERIA):
            expected = 4 + case2_score(r["slot"], k)  # one rater: sum over the two cases
            got = summary["scores"][r["system"]][crit]
            assert got["paper_scale"] == expected and got["mean"] == expected / 2 and got["complete"]
    exported = list(csv.DictReader((out / "ratings.csv").open()))
    assert len(exported) == len(rows) * len(store.CRITERIA)
    slot_of = {r["candidate_id"]: r["slot"] for r in rows}
    for e in exported:
        k = store.CRITERIA.index(e["criterion"])
        want = 4 if e["case"] == "1" else case2_score(slot_of[e["candidate_id"]], k)
        assert int(e["score"]) == want and e["rater"] == "Dr Test"
    assert sum(e["comment"] == "Omits the effusion size." for e in exported) == len(store.CRITERIA)
