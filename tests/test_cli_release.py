"""``tailor models canary|shadow|promote|rollback|abort`` as a user runs them: each change in one command,
recorded with ``cli:<os user>`` and the reason; bad input in one line with exit 2, never a traceback."""

import getpass
import json

from test_cli import _publish, run_cli


def test_canary_promote_rollback_shadow_abort_and_the_history(tmp_path):
    home = tmp_path / "home"
    _publish(home, "spam", versions=3)
    actor = f"cli:{getpass.getuser()}"

    def cli(*args):
        out = run_cli(*args, home=home)
        return out.returncode, out.stdout.strip(), out.stderr.strip()

    assert cli("models", "alias", "spam:1", "prod", "--reason", "first release") == (0, "spam@prod → spam:1", "")
    assert cli("models", "canary", "spam@prod", "2", "--share", "0.1", "--reason", "try v2") == (
        0, "spam@prod → spam:1 (canary spam:2 at 10%)", "")
    promoted = json.loads(cli("models", "promote", "spam@prod", "--json", "--reason", "v2 holds up")[1])
    assert promoted == {"model": "spam", "alias": "prod", "version": 2, "candidate": None}
    assert cli("models", "rollback", "spam@prod", "--reason", "complaints") == (0, "spam@prod → spam:1", "")
    shadow = json.loads(cli("models", "shadow", "spam@prod", "3", "--json")[1])
    assert shadow == {"model": "spam", "alias": "prod", "version": 1,
                      "candidate": {"version": 3, "mode": "shadow", "share": None}}
    assert cli("models", "aliases", "spam")[1].splitlines()[0] == (
        "aliases: spam@prod → spam:1 (shadow spam:3)")
    assert cli("models", "abort", "spam@prod") == (0, "spam@prod → spam:1", "")

    code, stdout, _ = cli("models", "aliases", "spam")
    assert code == 0
    assert [line.split(maxsplit=2)[2] for line in stdout.splitlines()[2:]] == [
        f"spam@prod → spam:1  by {actor}: first release",
        f"spam@prod canary spam:2 at 10%  by {actor}: try v2",
        f"spam@prod promoted → spam:2  by {actor}: v2 holds up",
        f"spam@prod rolled back → spam:1  by {actor}: complaints",
        f"spam@prod shadow spam:3  by {actor}",
        f"spam@prod canary/shadow stopped  by {actor}"]
    listed = json.loads(cli("models", "aliases", "spam", "--json")[1])
    assert (listed["aliases"], listed["candidates"]) == ({"prod": 1}, {})
    assert [(e["action"], e["version"], e["candidate"], e["actor"], e["reason"]) for e in listed["history"]] == [
        ("set", 1, None, actor, "first release"),
        ("canary", 1, {"version": 2, "mode": "canary", "share": 0.1}, actor, "try v2"),
        ("promote", 2, None, actor, "v2 holds up"), ("rollback", 1, None, actor, "complaints"),
        ("shadow", 1, {"version": 3, "mode": "shadow", "share": None}, actor, None), ("abort", 1, None, actor, None)]


def test_bad_release_input_is_one_line_and_exit_2(tmp_path):
    home = tmp_path / "home"
    _publish(home, "spam", versions=2)
    assert run_cli("models", "alias", "spam:1", "prod", home=home).returncode == 0
    refusals = [
        (("canary", "spam@prod", "2", "--share", "1.5"), "error: share must be between 0 and 1 (exclusive), got 1.5"),
        (("canary", "spam@prod", "1", "--share", "0.5"),
         "error: spam@prod already points at spam:1; a candidate must be another version"),
        (("canary", "spam@prod", "7", "--share", "0.5"), "error: version spam:7 not found"),
        (("shadow", "spam@beta", "2"), "error: alias spam@beta not found"),
        (("promote", "spam@prod"), "error: spam@prod has no candidate to promote: start a canary or a shadow first, "
                                   "or give the version to promote"),
        (("rollback", "spam@prod"), "error: spam@prod has no earlier version to roll back to"),
        (("abort", "spam@prod"), "error: spam@prod has no canary or shadow to stop"),
        (("promote", "spam:1"), "error: give the alias to release through as NAME@ALIAS (e.g. spam@prod), not "
                                "'spam:1'"),
        (("rollback", "spam@latest"), "error: alias 'latest' is reserved: it always means the highest version"),
        (("rollback", "nope@prod"), "error: model 'nope' not found"),
    ]
    for args, message in refusals:
        out = run_cli("models", *args, home=home)
        assert (out.returncode, out.stdout, out.stderr) == (2, "", message + "\n"), args
    missing_share = run_cli("models", "canary", "spam@prod", "2", home=home)
    assert missing_share.returncode == 2 and "the following arguments are required: --share" in missing_share.stderr
