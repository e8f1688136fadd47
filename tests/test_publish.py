"""publish: the site lands on gh-pages through a worktree; the user's branch and files stay as they were."""
import subprocess

import pytest

from microscope.errors import UsageError
from microscope.publish import publish


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


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
    site = repo / "site"
    (site / "models" / "m").mkdir(parents=True)
    (site / "index.html").write_text("<html>home</html>")
    (site / "models" / "m" / "index.html").write_text("<html>model</html>")
    return repo


def test_publish_creates_pages_branch_without_touching_main(repo):
    head_before = git(repo, "rev-parse", "HEAD")
    result = publish(repo / "site", repo)
    assert result["changed"] and not result["pushed"]
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == ""
    files = set(git(repo, "ls-tree", "-r", "--name-only", "gh-pages").splitlines())
    assert files == {".nojekyll", "index.html", "models/m/index.html"}
    assert git(repo, "show", "gh-pages:models/m/index.html") == "<html>model</html>"
    # the pages branch shares no history with main
    assert git(repo, "rev-list", "gh-pages") == result["commit"]
    assert git(repo, "worktree", "list").count("\n") == 0  # the temporary worktree is gone


def test_republish_updates_and_removes_stale_files(repo):
    first = publish(repo / "site", repo)
    again = publish(repo / "site", repo)
    assert not again["changed"] and again["commit"] == first["commit"]
    (repo / "site" / "models" / "m" / "index.html").unlink()
    (repo / "site" / "new.html").write_text("new")
    third = publish(repo / "site", repo, message="update")
    assert third["changed"]
    assert git(repo, "rev-parse", "gh-pages^") == first["commit"]
    files = set(git(repo, "ls-tree", "-r", "--name-only", "gh-pages").splitlines())
    assert files == {".nojekyll", "index.html", "new.html"}


def test_push_sends_only_the_pages_branch(repo, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    result = publish(repo / "site", repo, push=True)
    assert result["pushed"]
    heads = git(remote, "for-each-ref", "--format=%(refname)")
    assert heads == "refs/heads/gh-pages"


def test_clear_errors(repo, tmp_path):
    with pytest.raises(UsageError, match="index.html missing"):
        publish(tmp_path / "nothing", repo)
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(UsageError, match="not inside a git repository"):
        publish(repo / "site", outside)
