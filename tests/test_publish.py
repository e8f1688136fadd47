"""publish: the site lands on gh-pages through a worktree; the user's branch and files stay as they were.

Only the files the site builder listed in manifest.json are published, checked byte for byte; a
branch publish did not make is replaced only with --force; user values never become git options.
"""
import json
import shutil
import subprocess

import pytest

from microscope.errors import UsageError
from microscope.site.publish import TRAILER, publish
from microscope.site.builder import build_site
from microscope.site.manifest import MANIFEST, check_site, read_manifest, write_manifest
from microscope.site.output import SiteWriter
from generated import cli
from site_fixtures import make_store

PAGES = {"index.html": "<html>home</html>", "models/m/index.html": "<html>model</html>"}
PUBLISHED = {".nojekyll", MANIFEST, *PAGES}


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def has_ref(repo, ref):
    probe = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], cwd=repo, capture_output=True)
    return probe.returncode == 0


def branch_files(repo, branch="gh-pages"):
    return set(git(repo, "ls-tree", "-r", "--name-only", branch).splitlines())


def make_site(site, pages):
    """Write `pages` the way the builder does (a SiteWriter, then the manifest); returns its warnings."""
    writer = SiteWriter(site)
    for relative, text in pages.items():
        writer.write_text(relative, text)
    return write_manifest(writer, "microscope test")


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "Test")
    git(repo, "config", "user.email", "test@example.org")
    (repo / "README.md").write_text("project\n")
    (repo / ".gitignore").write_text("site/\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "init")
    make_site(repo / "site", PAGES)
    return repo


def test_publish_creates_pages_branch_without_touching_main(repo):
    head_before = git(repo, "rev-parse", "HEAD")
    result = publish(repo / "site", repo)
    assert result["changed"] and not result["pushed"]
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == ""
    assert branch_files(repo) == PUBLISHED
    assert git(repo, "show", "gh-pages:models/m/index.html") == "<html>model</html>"
    # the pages branch shares no history with main
    assert git(repo, "rev-list", "gh-pages") == result["commit"]
    assert git(repo, "worktree", "list").count("\n") == 0  # the temporary worktree is gone
    assert git(repo, "log", "-1", "--format=%B", "gh-pages").endswith(TRAILER)


def test_republish_updates_and_removes_stale_files(repo):
    first = publish(repo / "site", repo)
    again = publish(repo / "site", repo)
    assert not again["changed"] and again["commit"] == first["commit"]
    (repo / "site" / "models" / "m" / "index.html").unlink()
    make_site(repo / "site", {"index.html": "<html>home</html>", "new.html": "new"})
    third = publish(repo / "site", repo, message="update")
    assert third["changed"]
    assert git(repo, "rev-parse", "gh-pages^") == first["commit"]
    assert branch_files(repo) == {".nojekyll", MANIFEST, "index.html", "new.html"}


def test_push_sends_only_the_pages_branch(repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    result = publish(repo / "site", repo, push=True)
    assert result["pushed"]
    heads = git(remote, "for-each-ref", "--format=%(refname)")
    assert heads == "refs/heads/gh-pages"


def test_clear_errors(repo, tmp_path):
    with pytest.raises(UsageError, match="not a site built by microscope: .* build it with `build.py site"):
        publish(tmp_path / "nothing", repo)
    handmade = tmp_path / "handmade"  # an index.html alone is no longer a site: nothing says what to publish
    handmade.mkdir()
    (handmade / "index.html").write_text("<html></html>")
    with pytest.raises(UsageError, match="manifest.json: missing"):
        publish(handmade, repo)
    (handmade / MANIFEST).write_text('{"format": 1, "generator": "microscope", "files": {"index.html": {"size": 1}}}')
    with pytest.raises(UsageError, match="damaged entry for 'index.html'"):
        publish(handmade, repo)
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(UsageError, match="not inside a git repository"):
        publish(repo / "site", outside)


# ------------------------------------------------------------------------------------------------
# A hostile or damaged site folder


def test_hostile_folder_publishes_only_the_manifest_files(repo, tmp_path):
    site = repo / "site"
    secret = tmp_path / "secret.txt"
    secret.write_text("password\n")
    private = tmp_path / "private"
    private.mkdir()
    (private / "key.pem").write_text("KEY\n")
    (site / "secret.txt").symlink_to(secret)
    (site / "keys").symlink_to(private, target_is_directory=True)
    (site / ".env").write_text("TOKEN=1\n")
    (site / "notes.txt").write_text("draft\n")
    git(site, "init", "-q")  # a .git of its own inside the site folder
    warnings = make_site(site, PAGES)  # a rebuild names what it will not publish
    assert len(warnings) == 1 and "notes.txt" in warnings[0] and "secret.txt" in warnings[0]
    assert ".env" not in warnings[0] and ".git" not in warnings[0]

    publish(site, repo)
    assert branch_files(repo) == PUBLISHED
    published = json.loads(git(repo, "show", f"gh-pages:{MANIFEST}"))
    assert set(published["files"]) == set(PAGES)
    assert check_site(site) == []  # unlisted files are no problem of the site's


def _modified(site, tmp_path):
    (site / "models" / "m" / "index.html").write_text("<html>MODEL</html>")  # same size, other bytes
    return "models/m/index.html: content changed after the build"


def _grown(site, tmp_path):
    (site / "index.html").write_text("<html>home, edited</html>")
    return "index.html: 25 bytes, the manifest says 17"


def _symlinked_file(site, tmp_path):
    # the same bytes, but from outside: a symlink is refused whatever it points at
    copy = tmp_path / "copy.html"
    shutil.copy(site / "index.html", copy)
    (site / "index.html").unlink()
    (site / "index.html").symlink_to(copy)
    return "index.html: is or passes through a symlink"


def _symlinked_folder(site, tmp_path):
    shutil.copytree(site / "models", tmp_path / "models")
    shutil.rmtree(site / "models")
    (site / "models").symlink_to(tmp_path / "models", target_is_directory=True)
    return "models/m/index.html: is or passes through a symlink"


def _escaping(site, tmp_path):
    (tmp_path / "repo" / "outside.html").write_text("x")
    manifest = json.loads((site / MANIFEST).read_text())
    manifest["files"]["../outside.html"] = manifest["files"].pop("index.html")
    (site / MANIFEST).write_text(json.dumps(manifest))
    return "'../outside.html': leaves the site folder"


def _missing(site, tmp_path):
    (site / "models" / "m" / "index.html").unlink()
    return "models/m/index.html: missing"


@pytest.mark.parametrize("damage", [_modified, _grown, _symlinked_file, _symlinked_folder, _escaping, _missing])
def test_damaged_site_is_refused_and_nothing_is_published(repo, tmp_path, damage):
    expected = damage(repo / "site", tmp_path)
    assert [line for line in check_site(repo / "site") if expected in line] == check_site(repo / "site")
    with pytest.raises(UsageError, match="not publishing") as error:
        publish(repo / "site", repo)
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not has_ref(repo, "gh-pages")
    assert git(repo, "worktree", "list").count("\n") == 0


# ------------------------------------------------------------------------------------------------
# Branches publish did not make, and values that look like git options


def test_branch_publish_did_not_make_needs_force(repo, tmp_path):
    git(repo, "branch", "gh-pages", "main")  # the user's own branch, by that name
    main_tip = git(repo, "rev-parse", "main")
    with pytest.raises(UsageError, match=r"not made by `build.py publish`.*pass --force"):
        publish(repo / "site", repo)
    assert git(repo, "rev-parse", "gh-pages") == main_tip
    result = publish(repo / "site", repo, force=True)
    assert branch_files(repo) == PUBLISHED and git(repo, "rev-parse", "gh-pages^") == main_tip
    assert git(repo, "rev-parse", "main") == main_tip

    # A commit added by hand on top of publish's (a custom domain) is not silently dropped either.
    worktree = tmp_path / "pages"
    git(repo, "worktree", "add", "-q", str(worktree), "gh-pages")
    (worktree / "CNAME").write_text("example.org\n")
    git(worktree, "add", "CNAME")
    git(worktree, "commit", "-q", "-m", "Add custom domain")
    git(repo, "worktree", "remove", str(worktree))
    with pytest.raises(UsageError, match="pass --force"):
        publish(repo / "site", repo)
    assert "CNAME" in branch_files(repo)
    assert publish(repo / "site", repo, force=True)["commit"] != result["commit"]
    assert "CNAME" not in branch_files(repo)
    publish(repo / "site", repo)  # ours again: no flag needed

    # Branches published before the trailer existed: their commits carry the old default message alone.
    legacy = git(repo, "commit-tree", "main^{tree}", "-m", "Publish microscope site")
    git(repo, "update-ref", "refs/heads/gh-pages", legacy)
    assert publish(repo / "site", repo)["changed"] and git(repo, "rev-parse", "gh-pages^") == legacy


@pytest.mark.parametrize("option, value, message", [
    ("--remote", "--receive-pack=touch {marker}", "--remote '--receive-pack=touch"),
    ("--branch", "-x", "--branch '-x' is not a valid branch name"),
])
def test_option_like_values_are_one_line_and_run_nothing(repo, tmp_path, monkeypatch, option, value, message):
    marker = tmp_path / "marker"
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    monkeypatch.chdir(repo)  # build.py publish works on the repository it is run in
    result = cli("publish", "--out", "site", "--push", option, value.replace("{marker}", str(marker)), code=2)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and message in result.stderr
    assert not marker.exists()
    assert not has_ref(repo, "gh-pages") and git(remote, "for-each-ref") == ""


@pytest.mark.parametrize("values, message", [
    ({"remote": "-oProxyCommand=touch {marker}"}, "is not a remote name or URL"),
    ({"remote": "origin\n--exec=touch {marker}"}, "is not a remote name or URL"),
    ({"branch": "--upload-pack=touch {marker}"}, "is not a valid branch name"),
    ({"branch": "@{-1}"}, "is not a valid branch name"),  # git would expand it to the previous branch
    ({"branch": "gh pages"}, "is not a valid branch name"),
])
def test_bad_branch_and_remote_values_are_refused(repo, tmp_path, values, message):
    marker = tmp_path / "marker"
    values = {key: value.replace("{marker}", str(marker)) for key, value in values.items()}
    with pytest.raises(UsageError, match=message):
        publish(repo / "site", repo, push=True, **values)
    assert not marker.exists() and not has_ref(repo, "gh-pages")


# ------------------------------------------------------------------------------------------------
# The builder's manifest, and the whole path into a bare repository


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store and the site the real builder made of it (copied by each test that changes it)."""
    root = tmp_path_factory.mktemp("built")
    store = make_store(root / "store")
    build_site(store, root / "site", progress=False)
    return store, root / "site"


def _copy_site(built, folder):
    shutil.copytree(built[1], folder, symlinks=True)
    return folder


def test_builder_lists_every_page_and_keeps_other_layers_on_one_layer_rebuilds(built, tmp_path):
    store, _ = built
    site = _copy_site(built, tmp_path / "site")
    files = read_manifest(site)["files"]
    on_disk = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert set(files) == {path for path in on_disk if not any(part.startswith(".") for part in path.split("/"))
                          and path != MANIFEST}
    assert check_site(site) == []

    # A page of conv1 edited by hand, then only mixed_a rebuilt with a new label: conv1's entries are
    # kept as the builder wrote them (the edit is caught, not blessed), mixed_a's follow the new pages.
    conv1_page = "models/tiny/conv1/0/index.html"
    (site / conv1_page).write_text((site / conv1_page).read_text().replace("<", " <", 1))
    report = build_site(store, site, layers=["mixed_a"], labels={"mixed_a": {"4": "new label"}}, progress=False)
    after = read_manifest(site)["files"]
    assert set(after) == set(files) and after[conv1_page] == files[conv1_page]
    assert after["models/tiny/mixed_a/4/index.html"] != files["models/tiny/mixed_a/4/index.html"]
    assert [line.split(":")[0] for line in check_site(site)] == [conv1_page]
    assert not report.warnings

    # A site built before manifests existed: a one-layer rebuild says what it cannot list.
    (site / MANIFEST).unlink()
    report = build_site(store, site, layers=["mixed_a"], progress=False)
    unlisted = on_disk - set(read_manifest(site)["files"]) - {MANIFEST}
    unlisted = {path for path in unlisted if not any(part.startswith(".") for part in path.split("/"))}
    assert "models/tiny/conv1/0/index.html" in unlisted
    assert len(report.warnings) == 1 and report.warnings[0].startswith(f"{len(unlisted)} files in ")
    assert "not in manifest.json and will not be published" in report.warnings[0]


def test_build_py_publish_into_a_bare_repository(built, repo, tmp_path, monkeypatch):
    site = _copy_site(built, repo / "built")
    (repo / ".gitignore").write_text("site/\nbuilt/\n")
    git(repo, "commit", "-q", "-am", "ignore the built site")
    remote = tmp_path / "pages.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    monkeypatch.chdir(repo)
    result = cli("publish", "--out", "built", "--push", "--remote", str(remote), "--message", "First pages")
    assert f"pushed to {remote}" in result.stdout
    listed = set(read_manifest(site)["files"])
    assert branch_files(remote) == listed | {MANIFEST, ".nojekyll"}
    assert git(remote, "show", "gh-pages:index.html") == (site / "index.html").read_text().strip()
    assert git(remote, "log", "-1", "--format=%B", "gh-pages") == f"First pages\n\n{TRAILER}"
    assert not any(".assets.json" in path for path in branch_files(remote))  # the builder's cache stays home
    again = cli("publish", "--out", "built", "--push", "--remote", str(remote))
    assert "unchanged" in again.stdout
