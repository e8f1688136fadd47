"""Publish a built site on the `gh-pages` branch of the current git repository.

The site is committed through a temporary `git worktree`, so the user's checkout, index and other
branches are never touched, and pushing (optional) sends only the pages branch, without force.

Only the files listed in the site's `manifest.json` (written by the site builder) are published,
each read without following symlinks and checked against its size and sha256: a site folder may
hold a `.git`, notes or a symlink to a private file, and none of that may reach a public branch.
Every commit publish makes carries the trailer `Published-by: microscope`; a branch whose last
commit lacks it was made (or amended) by someone else and is replaced only with `force=True`.
User values (branch, remote) are checked before git sees them, so none can become a git option.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from microscope.errors import DiskFull, UsageError, megabytes, no_space, no_space_line
from microscope.site.manifest import MANIFEST, SiteFileError, listed_file, manifest_text, read_manifest

TRAILER = "Published-by: microscope"
DEFAULT_MESSAGE = "Publish microscope site"  # also the whole message of commits from before TRAILER


GIT_NO_SPACE = ("No space left on device", "Disk quota exceeded")  # git's words for ENOSPC, EDQUOT
LOW_SPACE = 64 * 1024  # free bytes under which a git failure that does not say why is taken for a full disk


class NoSpace(Exception):
    """A folder publishing writes to ran out of space; `publish` says it in one line, with the site's size."""

    def __init__(self, where: str, folder, reason: str):
        super().__init__(where)
        self.where, self.folder, self.reason = where, folder, reason


def _git(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode != 0:
        output = result.stderr or result.stdout
        full = next((words for words in GIT_NO_SPACE if words in output), None)
        if full is not None and tempfile.gettempdir() in output:  # checking files out into the worktree
            raise NoSpace("the temporary folder", tempfile.gettempdir(), full)
        if full is not None:  # writing objects into the repository's git folder
            common = _git(["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd, check=False)
            folder = common.stdout.strip() or cwd  # (not the worktree's own folder inside it)
            raise NoSpace("the git folder", folder, full)
        low = _full_folder(cwd)
        if low is not None:  # git says only "couldn't write ...lock" when a ref or lock file finds no room
            raise NoSpace(*low, "almost no free space")
        detail = output.strip().splitlines()
        raise UsageError(f"git {' '.join(args)} failed: {detail[-1] if detail else 'no output'}")
    return result


def _full_folder(cwd: Path) -> tuple[str, str] | None:
    """(where, folder) of a folder publishing writes to that has (almost) no free space, the temporary worktree's
    first; None if both have room."""
    common = _git(["rev-parse", "--path-format=absolute", "--git-common-dir"], cwd, check=False).stdout.strip()
    for where, folder in (("the temporary folder", tempfile.gettempdir()), ("the git folder", common or str(cwd))):
        try:
            if shutil.disk_usage(folder).free < LOW_SPACE:
                return where, folder
        except OSError:  # a folder that is not there: not the one that is full
            continue
    return None


def _identity(repo: Path) -> list[str]:
    """The user's git identity if they have one; a neutral one otherwise (commit would refuse)."""
    args = []
    for key, fallback in (("user.name", "microscope"), ("user.email", "microscope@localhost")):
        if _git(["config", key], repo, check=False).returncode != 0:
            args += ["-c", f"{key}={fallback}"]
    return args


def check_remote(remote: str) -> None:
    """A remote name or URL that git cannot read as an option (`--upload-pack=...` would run a command)."""
    if not remote or remote.startswith("-") or any(ord(c) < 32 or c == "\x7f" for c in remote):
        raise UsageError(f"--remote {remote!r} is not a remote name or URL; use a name that `git remote` "
                         "lists (such as origin) or a repository URL")


def check_branch(branch: str, repo: Path) -> None:
    """A plain branch name: git's own rules, and nothing it would expand (`@{-1}`) or read as an option."""
    if branch and not branch.startswith("-"):
        result = _git(["check-ref-format", "--branch", branch], repo, check=False)
        if result.returncode == 0 and result.stdout.strip() == branch:
            return
    raise UsageError(f"--branch {branch!r} is not a valid branch name; use a name such as gh-pages")


def _made_by_publish(repo: Path, branch: str) -> bool:
    """Whether the branch's last commit is one of ours: its last paragraph holds TRAILER.

    The tip commit, not a marker file: a commit added by hand on top (a CNAME, an edited page)
    lacks the trailer, so publish refuses rather than silently dropping that work.
    """
    body = _git(["log", "-1", "--format=%B", f"refs/heads/{branch}", "--"], repo).stdout.strip()
    return TRAILER in (line.strip() for line in body.split("\n\n")[-1].splitlines()) or body == DEFAULT_MESSAGE


def _find_repo(repo_dir: Path) -> Path:
    probe = _git(["rev-parse", "--show-toplevel"], repo_dir, check=False)
    if probe.returncode != 0:
        raise UsageError(f"{repo_dir.resolve()} is not inside a git repository; "
                         "run `git init` or publish from your clone")
    return Path(probe.stdout.strip())


def _copy_site(site: Path, manifest: dict, target: Path) -> None:
    """Make `target` (a worktree) hold exactly the manifest's files, keeping its .git link."""
    for entry in target.iterdir():
        if entry.name == ".git":
            continue
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for relative, entry in sorted(manifest["files"].items()):
        try:
            data = listed_file(site, relative, entry)  # checks the path too: it cannot leave `target`
        except SiteFileError as error:
            raise UsageError(f"not publishing {site}: {error}; rebuild it with `build.py site --out {site}` "
                             "(nothing was committed)") from None
        destination = target / relative
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(data)
        except OSError as error:
            if no_space(error) is not None:
                raise  # said by `publish`, with the space it needs
            raise UsageError(f"not publishing {site}: cannot copy {relative} ({error.strerror})") from None
    (target / MANIFEST).write_text(manifest_text(manifest["files"], manifest["generator"]), encoding="utf-8")
    (target / ".nojekyll").touch()  # GitHub Pages must not run Jekyll over the files


def publish(site_dir: str | Path, repo_dir: str | Path = ".", branch: str = "gh-pages", message: str | None = None,
            push: bool = False, remote: str = "origin", force: bool = False) -> dict:
    """Commit the manifest's files of `site_dir` as the whole content of `branch`.

    Returns {"commit", "changed", "pushed", "branch"}. `force`: replace a branch publish did not make.
    """
    check_remote(remote)
    site = Path(site_dir).resolve()
    manifest = read_manifest(site)
    repo = _find_repo(Path(repo_dir))
    check_branch(branch, repo)
    ignored = _git(["check-ignore", "-q", "--", str(site)], repo, check=False).returncode == 0
    if site == repo or repo in site.parents and not ignored:
        raise UsageError(f"the site folder {site_dir} is tracked by this repository; "
                         "build it into an ignored folder such as site/")
    has_branch = _git(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], repo, check=False).returncode == 0
    if has_branch and not force and not _made_by_publish(repo, branch):
        raise UsageError(f"branch {branch} was not made by `build.py publish` (its last commit has no "
                         f"'{TRAILER}' line) and publishing replaces all its files; pass --force to replace them, "
                         "or choose another --branch")

    try:
        commit, changed = _commit(site, manifest, repo, branch, has_branch, message)
    except OSError as error:  # copying the files into the temporary worktree
        if no_space(error) is None:
            raise
        raise _disk_full(NoSpace("the temporary folder", tempfile.gettempdir(), error.strerror), manifest) from None
    except NoSpace as full:
        raise _disk_full(full, manifest) from None
    pushed = False
    if push:
        _git(["push", "--", remote, f"refs/heads/{branch}:refs/heads/{branch}"], repo)
        pushed = True
    return {"commit": commit, "changed": changed, "pushed": pushed, "branch": branch}


def _disk_full(full: NoSpace, manifest: dict) -> DiskFull:
    """The one line: the worktree and the git folder each need about the site's size, at most."""
    size = sum(entry["size"] for entry in manifest["files"].values())
    return DiskFull(no_space_line(full.where, full.folder, full.reason, f"publishing needs about {megabytes(size)}",
                                  "run publish again; nothing was committed"))


def _commit(site: Path, manifest: dict, repo: Path, branch: str, has_branch: bool, message: str | None):
    """The manifest's files committed as the whole content of `branch`, through a temporary worktree:
    (commit, whether it changed anything)."""
    with tempfile.TemporaryDirectory(prefix="microscope-publish-") as tmp:
        worktree = Path(tmp) / "pages"
        if has_branch:
            _git(["worktree", "add", "--quiet", "--", str(worktree), branch], repo)
        else:  # an orphan branch: the pages history shares nothing with the source history
            _git(["worktree", "add", "--quiet", "--detach", "--", str(worktree)], repo)
            _git(["checkout", "--quiet", f"--orphan={branch}"], worktree)
            _git(["rm", "-rf", "--quiet", "--ignore-unmatch", "--", "."], worktree)
        try:
            _copy_site(site, manifest, worktree)
            _git(["add", "--all", "--", "."], worktree)
            changed = _git(["diff", "--cached", "--quiet"], worktree, check=False).returncode != 0 or not has_branch
            if changed:
                text = f"{(message or DEFAULT_MESSAGE).rstrip()}\n\n{TRAILER}\n"
                _git([*_identity(repo), "commit", "--quiet", "--allow-empty", "-m", text], worktree)
            commit = _git(["rev-parse", "HEAD"], worktree).stdout.strip()
        finally:
            _git(["worktree", "remove", "--force", "--", str(worktree)], repo, check=False)
            _git(["worktree", "prune"], repo, check=False)
    return commit, changed
