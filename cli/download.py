"""Fetches each Hugging Face file of the FAMILY (default: all) into its folder under the name the example workflows
use: resumable (run again after an interruption), verified against the hub's size and sha256, moved into place only
when complete. A file already there that matches the hub is left alone; one that does not is replaced. Files no hub
serves (PCDMs weights on Google Drive, SCFM) are listed with exact steps. Honours HF_ENDPOINT, HF_HUB_OFFLINE,
HF_TOKEN and HTTPS_PROXY. Exit status: 0 when nothing failed, 2 when a download failed, 130 when interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..model_files import folders, hub
from ..model_files.catalogue import FAMILIES, HubFile, ModelFile, files_of


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "download", help="fetch the public model files (Hugging Face) into the models folder; --dry-run lists all",
        description=__doc__,
        epilog="families: " + "; ".join(f"{name}: {family.what}" for name, family in FAMILIES.items()))
    parser.add_argument("families", nargs="*", metavar="FAMILY", help=f"any of {', '.join(FAMILIES)} (default: all)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list every file with its folder, source and state; download nothing")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    families = args.families or list(FAMILIES)
    files = files_of(families)  # refuses unknown names before anything else
    root = folders.find_models_root(getattr(args, "models_dir", None))
    print(f"Models folder: {root.describe()}")
    if args.dry_run:
        return _list(root, families)
    return _download(root, files)


def _located(root: folders.ModelsRoot, file: ModelFile) -> tuple[str, bool]:
    """The path loaders would use (the first match in the folder's search directories), else where to put it."""
    try:
        return folders.find_in(root, file.folder, file.name), True
    except FileNotFoundError:
        return os.path.join(root.models_dir, file.folder, file.name), False


def _list(root: folders.ModelsRoot, families: list[str]) -> int:
    remotes: dict[str, hub.Remote | str] = {}  # key -> what the hub says, or why it was not asked
    unreachable = "HF_HUB_OFFLINE is set" if hub.offline() else None
    print(f"Hub: {hub.endpoint()}" + (f" ({unreachable}: sizes not checked)" if unreachable else ""))
    for name in families:
        family = FAMILIES[name]
        print(f"\n{name}: {family.what}")
        for file in family.files:
            path, exists = _located(root, file)
            if isinstance(file.source, HubFile) and file.key not in remotes and not unreachable:
                try:
                    remotes[file.key] = hub.remote_metadata(file.source, file.name)
                except hub.DownloadError as error:
                    remotes[file.key] = str(error)
                    if error.unreachable:  # one wait for a dead network is enough
                        unreachable = "not reached, see above"
            remote = remotes.get(file.key)
            state, detail = _state(path, exists, remote)
            where = "" if path == os.path.join(root.models_dir, file.folder, file.name) else f" at {path}"
            print(f"  {state:<9} {file.relative} - {file.what}{where}{detail}")
            if isinstance(file.source, HubFile):
                size = f" ({remote.size / 1e9:.2f} GB)" if isinstance(remote, hub.Remote) and remote.size else ""
                print(f"  {'':<9} {file.source.url(hub.endpoint())}{size}")
                if isinstance(remote, str):
                    print(f"  {'':<9} hub not reached: {remote}")
            else:
                print(f"  {'':<9} {file.source.instructions(path)}")
    return 0


def _state(path: str, exists: bool, remote: hub.Remote | str | None) -> tuple[str, str]:
    """(present | missing | mismatch | partial, details)."""
    known = isinstance(remote, hub.Remote) and remote.size is not None
    if exists:
        size = os.path.getsize(path)
        if known and size != remote.size:
            return "mismatch", f" [{size} bytes here, the hub's file has {remote.size}: download replaces it]"
        return "present", ""
    if known and hub.partial_size(path, remote):
        return "partial", f" [{hub.partial_size(path, remote)} of {remote.size} bytes: download resumes]"
    return "missing", ""


def _download(root: folders.ModelsRoot, files: list[ModelFile]) -> int:
    errors, manual = [], []
    unreachable: hub.DownloadError | None = None
    try:
        for file in files:
            path, exists = _located(root, file)
            if not isinstance(file.source, HubFile):
                if exists:
                    print(f"present     {path}")
                else:
                    manual.append(f"- {file.relative} ({file.what}): {file.source.instructions(path)}")
                continue
            try:
                if unreachable:  # the hub did not answer for an earlier file: do not wait again
                    url = file.source.url(hub.endpoint())
                    raise hub.DownloadError(f"{file.name}: {url} not tried: the hub did not answer for an earlier "
                                            "file (see above)")
                remote = hub.remote_metadata(file.source, file.name)
            except hub.DownloadError as error:
                unreachable = unreachable or (error if error.unreachable else None)
                if exists:
                    print(f"present     {path} (not checked against the hub: {error})")
                else:
                    errors.append(str(error))
                continue
            if exists:
                print(f"checking    {path}", flush=True)
                problem = hub.matches(path, remote)
                if problem is None:
                    print(f"ok          {path} (size and sha256 match the hub)")
                    continue
                print(f"replacing   {path}: {problem}")
            else:
                print(f"fetching    {path} from {remote.url}", flush=True)
            try:
                hub.fetch(remote, path, file.name)
            except hub.DownloadError as error:
                errors.append(str(error))
                continue
            print(f"downloaded  {path}")
    except KeyboardInterrupt:
        print("\ninterrupted: what was transferred is kept; run the same command again to resume", file=sys.stderr)
        return 130
    if manual:
        print("\nNot on a hub; get these by hand:\n" + "\n".join(manual))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return 2 if errors else 0
