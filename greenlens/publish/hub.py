"""One upload for every kind of Hub repo: the repo's files become exactly a staged folder's, in one
commit, with huggingface_hub's `upload_folder` (which stores large and binary files through Xet/LFS, as
the Hub requires; a plain `git push` of them is refused). Errors become PushError with what to set."""

from __future__ import annotations

from pathlib import Path

from greenlens.core.repository import parse_hub_id


class PushError(RuntimeError):
    """A push the Hub refused or could not receive; the message says what to set."""


def repo_id_of(name: str) -> str:
    """`org/name` (also `hf://org/name`); a revision is refused: a push always goes to main."""
    parsed = parse_hub_id(name)
    if parsed is None or parsed[1] is not None:
        raise PushError(f"{name!r} is not a Hub repo id of the form org/name")
    return parsed[0]


def replace_repo(staged: Path, repo_id: str, *, repo_type: str = "model", private: bool = False, message: str,
                 space_sdk: str | None = None, variables: dict[str, str] | None = None):
    """Creates the repo if needed and uploads `staged` so that the repo holds exactly its files: files of
    an earlier upload that this one lacks are deleted in the same commit (a stale ood.npz beside new
    weights would misjudge every input; a deleted module would linger in a Space). `private` also makes
    an existing public repo private; `variables` become a Space's variables. The token comes from
    HF_TOKEN or `hf auth login` and is never printed. Returns huggingface_hub's CommitInfo."""
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if get_token() is None:
        raise PushError("No Hugging Face token found: set HF_TOKEN to a token with write access, or run `hf auth login`")
    api = HfApi(library_name="greenlens")
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        if private and not api.repo_info(repo_id, repo_type=repo_type).private:  # create_repo leaves it as it is
            api.update_repo_settings(repo_id, repo_type=repo_type, private=True)
        for key, value in (variables or {}).items():
            api.add_space_variable(repo_id, key, value)
        pushed = {path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()}
        stale = sorted(set(api.list_repo_files(repo_id, repo_type=repo_type)) - pushed - {".gitattributes"})
        return api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=staged, commit_message=message,
                                 delete_patterns=stale or None)
    except HfHubHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status in (401, 403):
            raise PushError(
                f"The Hub refused the push to {repo_id} (HTTP {status}): set HF_TOKEN to a token with write "
                f"access to {repo_id.split('/')[0]}, or run `hf auth login`"
            ) from None
        raise PushError(f"The Hub refused the push to {repo_id}: {str(error).strip().splitlines()[0]}") from None
    except Exception as error:
        if type(error).__module__.split(".")[0].startswith("httpx"):
            raise PushError(f"The Hub at {constants.ENDPOINT} could not be reached: {error}") from None
        raise
