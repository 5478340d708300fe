"""Organizers export every submission of an exercise as CSV (services/exports.py): through the shell
on SQLite and PostgreSQL, and over Slack HTTP, where the file is uploaded to the organizer's DM."""

from __future__ import annotations

import csv
import io

from studybot.db.models import Submission
from studybot.services.exports import CSV_COLUMNS
from tests.conftest import SIGNING_SECRET
from tests.support import signed_requests as slack
from tests.support.boards import start, submit


def test_export_is_a_csv_of_every_submission_for_organizers_only(bot, tmp_path):
    start(bot)
    bot.chat.files_dir = tmp_path / "files"
    db = bot.services.db
    passed = submit(db, "ada", 40.0, minutes=1)
    failed = submit(db, "bob", None, status="crashed", minutes=2)
    dq = submit(db, "cy", 20.0, minutes=3, disqualified=True)
    submit(db, "dee", 5.0, minutes=4, exercise="mnist1d")  # another exercise: not in this export
    with db.session() as s:
        s.get(Submission, dq).disqualified_reason = "=HYPERLINK(\"http://x\")"  # a spreadsheet formula stays text
    refused = bot.say("/study export digits fastai", as_user="ada")
    assert "Only organizers of fastai" in refused
    assert not (tmp_path / "files").exists()
    said = bot.say("/study export digits fastai", as_user="carol")
    assert "Sent fastai-digits-submissions-20270104-1200.csv to you in a direct message: 3 submissions" in said
    [path] = list((tmp_path / "files" / "carol").iterdir())
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert list(rows[0]) == [name for name, _ in CSV_COLUMNS]
    assert [(int(r["submission_id"]), r["status"], r["board_rank"]) for r in rows] == [
        (passed, "passed", "1"), (failed, "crashed", ""), (dq, "passed", "")]
    assert rows[2]["disqualified_by"] == "admin" and rows[2]["disqualified_reason"] == "'=HYPERLINK(\"http://x\")"
    assert rows[0]["user_id"] == "ada" and rows[0]["created_at"] == "2027-01-04T12:01:00Z"
    assert rows[0]["train_seconds"] == "40.0" and rows[1]["train_seconds"] == ""
    filename, content = bot.services.exports.export_csv("carol", "digits", "fastai")
    assert content == path.read_bytes() and filename == path.name


# ---- Slack ------------------------------------------------------------------------------------


def test_slack_export_uploads_the_csv_to_the_organizers_dm(slack_app):
    fake = slack_app.fake

    def study(text, user="UADMIN", name="r1"):
        response = slack.slash_command(slack_app.url, SIGNING_SECRET, text=text, user_id=user,
                                       response_url=fake.response_url(name))
        assert response.status_code == 200
        if response.content:
            return response.json()
        [answer] = fake.wait_for("response_url", where=lambda c: c.args["_name"] == name)
        return answer.args

    study("cohort create fastai --channel <#CSTUDY|fastai-study> --start 2027-01-05 --time 18:00 --tz Europe/Berlin",
          name="create")
    study("join fastai", user="U1", name="join")
    submit(slack_app.services.db, "U1", 41.5)
    refused = study("export digits fastai", user="U2", name="refused")
    assert "Only organizers" in refused["text"] and refused["response_type"] == "ephemeral"
    answer = study("export digits fastai", name="export")
    assert answer["response_type"] == "ephemeral" and "Sent fastai-digits-submissions-" in answer["text"]
    [opened] = [c for c in fake.calls_to("conversations.open") if c.args.get("users") == "UADMIN"]
    [url] = fake.wait_for("files.getUploadURLExternal")
    assert url.args["filename"].startswith("fastai-digits-submissions-") and url.args["filename"].endswith(".csv")
    [upload] = fake.wait_for("upload")
    assert upload.args["content"].startswith(b"submission_id,cohort,exercise,user_id,")
    assert b",U1,named," in upload.args["content"]
    [complete] = fake.wait_for("files.completeUploadExternal")
    assert complete.args["channel_id"] == "DUADMIN"  # the DM's D… id, never the U… id
    assert complete.args["files"][0]["id"] == url.response["file_id"]
    assert complete.args["files"][0]["title"] == "fastai digits submissions"
    assert [c.method for c in fake.calls if c.method in ("files.getUploadURLExternal", "upload",
                                                          "files.completeUploadExternal")] == [
        "files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert not fake.calls_to("files.upload")
