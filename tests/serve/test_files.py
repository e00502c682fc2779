"""``/v1/files``: upload checks (every refusal with its status and message), listing, content, report, delete."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api_helpers import SMALL_CSV, error_of, upload

FILE_KEYS = {"id", "object", "bytes", "created_at", "filename", "purpose", "status", "status_details", "expires_at",
             "kind", "summary"}


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_upload_csv(client, acme):
    response = upload(client, acme)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == FILE_KEYS
    assert body["id"].startswith("file-")
    assert (body["object"], body["bytes"], body["filename"], body["purpose"], body["status"], body["kind"]) == (
        "file", len(SMALL_CSV), "train.csv", "fine-tune", "processed", "text-label")
    assert body["summary"] == {"format": "csv", "encoding": "utf-8", "rows": 36, "text_column": "text",
                               "label_column": "label", "labels": {"bearish": 12, "bullish": 12, "neutral": 12}}
    assert body["status_details"] is None and body["expires_at"] is None


def test_upload_jsonl_text_label(client, acme):
    content = jsonl({"text": f"stock {i} moved", "label": ("up", "down")[i % 2]} for i in range(10))
    body = upload(client, acme, content, filename="rows.jsonl").json()
    assert body["kind"] == "text-label"
    assert body["summary"] == {"format": "jsonl", "encoding": "utf-8", "rows": 10, "text_column": "text",
                               "label_column": "label", "labels": {"down": 5, "up": 5}}


def test_upload_jsonl_with_a_bad_line_names_it(client, acme, settings):
    lines = [json.dumps({"text": f"stock {i} moved", "label": "up"}) for i in range(5)]
    lines[2] = '{"text": "broken'
    error = error_of(upload(client, acme, "\n".join(lines).encode(), filename="bad.jsonl"), 400)
    assert error["message"].startswith("bad.jsonl: line 3: not valid JSON")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "file", "invalid_file")
    assert list((settings.files_dir / ".incoming").iterdir()) == []


@pytest.mark.parametrize("filename, content, param", [
    ("one.csv", b"text,category\n" + b"".join(b"row %d,up\n" % i for i in range(5)), "category"),
    ("one.jsonl", jsonl({"text": f"stock {i} moved", "label": "up"} for i in range(5)), "label"),
])
def test_upload_of_a_one_class_file_is_refused(client, acme, settings, filename, content, param):
    error = error_of(upload(client, acme, content, filename=filename), 400)
    assert error["message"] == f"{filename}: only one class ('up') in the file: a classifier needs at least 2 labels"
    assert (error["param"], error["code"]) == (param, "invalid_file")
    assert client.get("/v1/files", headers=acme.headers).json()["data"] == []
    assert list((settings.files_dir / ".incoming").iterdir()) == []


def test_upload_of_a_one_line_chat_file_is_not_a_label_check(client, acme):
    content = jsonl([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}])
    body = upload(client, acme, content, filename="chat.jsonl").json()
    assert (body["kind"], body["summary"]["examples"]) == ("chat", 1)


def test_upload_binary_junk(client, acme, settings):
    junk = bytes(range(256)) * 8
    error = error_of(upload(client, acme, junk, filename="junk.csv"), 400)
    assert error["message"] == "junk.csv: the file looks like a binary file, not CSV/TSV/JSONL"
    assert str(settings.home) not in error["message"]  # no storage path leaks out


def test_upload_unsupported_suffix(client, acme):
    error = error_of(upload(client, acme, filename="train.xlsx"), 400)
    assert error["message"] == "train.xlsx: unsupported file type '.xlsx': upload CSV, TSV or JSONL"
    assert error["param"] == "file"


def test_upload_empty_file(client, acme):
    error = error_of(upload(client, acme, b""), 400)
    assert (error["message"], error["param"], error["code"]) == ("the uploaded file is empty", "file", "empty_file")


def test_upload_without_purpose(client, acme, settings):
    response = client.post("/v1/files", headers=acme.headers, files={"file": ("train.csv", SMALL_CSV)})
    error = error_of(response, 400)
    assert (error["message"], error["param"]) == ("missing form field 'purpose' (use purpose=fine-tune)", "purpose")
    assert list((settings.files_dir / ".incoming").iterdir()) == []


def test_upload_with_a_wrong_purpose(client, acme):
    error = error_of(upload(client, acme, purpose="assistants"), 400)
    assert (error["message"], error["param"]) == ("unsupported purpose 'assistants'; use: fine-tune", "purpose")
    assert client.get("/v1/files", headers=acme.headers).json()["data"] == []


def test_upload_over_the_limit_leaves_nothing(fresh_home, db_url, acme):
    from tailor.serve.app import create_app
    from tailor.settings import Settings

    small = Settings(home=fresh_home, database_url=db_url, max_file_mb=0.001)
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        error = error_of(upload(client, acme), 413)
        assert "over the limit" in error["message"]
        assert (error["param"], error["code"]) == ("file", "file_too_large")
        assert client.get("/v1/files", headers=acme.headers).json()["data"] == []
    assert list((small.files_dir / ".incoming").iterdir()) == []
    assert [p.name for p in small.files_dir.iterdir()] == [".incoming"]


def test_upload_as_json_is_unsupported_media(client, acme):
    response = client.post("/v1/files", headers=acme.headers, json={"file": "text,label", "purpose": "fine-tune"})
    error = error_of(response, 415)
    assert error["message"] == "Content-Type must be multipart/form-data, not 'application/json'"
    assert error["code"] == "unsupported_media_type"


def test_upload_multipart_without_boundary(client, acme):
    response = client.post("/v1/files", headers={**acme.headers, "Content-Type": "multipart/form-data"},
                           content=b"garbage")
    error = error_of(response, 400)
    assert error["message"] == "malformed multipart body: the Content-Type header has no boundary"


def test_upload_malformed_multipart_body(client, acme, settings):
    response = client.post("/v1/files", content=b"this is not a multipart body at all",
                           headers={**acme.headers, "Content-Type": "multipart/form-data; boundary=xyz"})
    error = error_of(response, 400)
    assert (error["message"].startswith("malformed multipart body")
            or error["message"] == "the form has no 'file' part: send the file as multipart field 'file'")
    assert list((settings.files_dir / ".incoming").iterdir()) == []


def test_list_newest_first_with_paging(client, acme):
    ids = [upload(client, acme, filename=f"f{i}.csv").json()["id"] for i in range(3)]
    listing = client.get("/v1/files", headers=acme.headers).json()
    assert [f["id"] for f in listing["data"]] == ids[::-1]
    assert (listing["object"], listing["has_more"], listing["first_id"], listing["last_id"]) == (
        "list", False, ids[2], ids[0])
    first = client.get("/v1/files", headers=acme.headers, params={"limit": 1}).json()
    assert [f["id"] for f in first["data"]] == [ids[2]] and first["has_more"] is True
    rest = client.get("/v1/files", headers=acme.headers, params={"limit": 5, "after": ids[2]}).json()
    assert [f["id"] for f in rest["data"]] == [ids[1], ids[0]] and rest["has_more"] is False
    assert client.get("/v1/files", headers=acme.headers, params={"purpose": "other"}).json()["data"] == []


def test_get_content_and_report(client, acme):
    created = upload(client, acme).json()
    got = client.get(f"/v1/files/{created['id']}", headers=acme.headers)
    assert got.status_code == 200 and got.json() == created
    content = client.get(f"/v1/files/{created['id']}/content", headers=acme.headers)
    assert content.status_code == 200 and content.content == SMALL_CSV
    assert content.headers["content-type"].startswith("text/csv")
    report = client.get(f"/v1/files/{created['id']}/report", headers=acme.headers)
    assert report.status_code == 200
    body = report.json()
    assert {"rows", "labels"} <= set(body)
    assert body["labels"]["counts"] == {"bearish": 12, "bullish": 12, "neutral": 12}
    assert body["rows"]["read"] == 36 and body["source"]["path"] == "train.csv"
    assert client.get(f"/v1/files/{created['id']}/report", headers=acme.headers).json() == body  # kept


def test_delete_then_404(client, acme, settings):
    file_id = upload(client, acme).json()["id"]
    response = client.delete(f"/v1/files/{file_id}", headers=acme.headers)
    assert response.status_code == 200
    assert response.json() == {"id": file_id, "object": "file", "deleted": True}
    error = error_of(client.get(f"/v1/files/{file_id}", headers=acme.headers), 404)
    assert (error["message"], error["code"]) == (f"file {file_id!r} not found", "not_found")
    error_of(client.delete(f"/v1/files/{file_id}", headers=acme.headers), 404)
    assert list((settings.files_dir / "acme").iterdir()) == []


def test_delete_of_a_file_used_by_a_queued_job_conflicts(client, acme):
    file_id = upload(client, acme).json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=acme.headers,
                      json={"model": "minilm-l6", "training_file": file_id}).json()
    error = error_of(client.delete(f"/v1/files/{file_id}", headers=acme.headers), 409)
    assert error["message"] == (f"file {file_id} is used by unfinished job {job['id']}; "
                                "cancel it or wait for it to end")
    assert client.get(f"/v1/files/{file_id}", headers=acme.headers).status_code == 200
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=acme.headers)
    assert client.delete(f"/v1/files/{file_id}", headers=acme.headers).status_code == 200


def test_delete_of_the_unlabeled_file_of_a_queued_job_conflicts(client, acme):
    file_id = upload(client, acme).json()["id"]
    pool_id = upload(client, acme, b"first text\nsecond text\n", filename="pool.txt").json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=acme.headers, json={
        "model": "minilm-l6", "training_file": file_id, "method": {"tailor": {"unlabeled_file": pool_id}}}).json()
    error = error_of(client.delete(f"/v1/files/{pool_id}", headers=acme.headers), 409)
    assert (error["message"], error["code"]) == (f"file {pool_id} is used by unfinished job {job['id']}; cancel it "
                                                 "or wait for it to end", "conflict")
    assert client.get(f"/v1/files/{pool_id}", headers=acme.headers).status_code == 200
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=acme.headers)
    assert client.delete(f"/v1/files/{pool_id}", headers=acme.headers).status_code == 200


@pytest.mark.parametrize("path", ["/v1/files/file-nope", "/v1/files/file-nope/content", "/v1/files/file-nope/report"])
def test_unknown_file(client, acme, path):
    error = error_of(client.get(path, headers=acme.headers), 404)
    assert error["message"] == "file 'file-nope' not found"


def test_a_query_parameter_must_be_known_and_given_once(client, acme):
    unknown = client.get("/v1/files?bogus=1", headers=acme.headers)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "unknown query parameter 'bogus' (this route takes: after, limit, purpose)"
    repeated = client.get("/v1/files?purpose=fine-tune&purpose=batch", headers=acme.headers)
    assert repeated.status_code == 400
    assert repeated.json()["error"] == {"message": "query parameter 'purpose' given 2 times; give it once",
                                        "type": "invalid_request_error", "param": "purpose", "code": None}


def test_an_empty_query_parameter_is_refused_not_read_as_absent(client, acme):
    for url, name in (("/v1/files?purpose=", "purpose"), ("/v1/files?after=", "after"),
                      ("/v1/fine_tuning/jobs?after=", "after")):
        response = client.get(url, headers=acme.headers)
        assert response.status_code == 400, url
        assert response.json()["error"]["param"] == name
