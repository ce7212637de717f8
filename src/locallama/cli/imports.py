"""``locallama import``: list the models this machine already has, and adopt them.

It works on the local store directly, never through a server: adopting is about
this machine's files.
"""

from __future__ import annotations

from pathlib import Path

import typer

from locallama.cli.app import app
from locallama.cli.output import columns, err_console, print_json, transfer_bars
from locallama.errors import InvalidRequest, LocallamaError
from locallama.settings import Settings
from locallama.units import format_bytes


@app.command("import")
def import_models(
    paths: list[Path] = typer.Argument(
        None, help="GGUF files, folders of them, or an Ollama models folder.", show_default=False),
    all_: bool = typer.Option(False, "--all", help="Adopt every model found in the known places."),
    name: str = typer.Option(None, "--name", help="The name for a single file."),
    force: bool = typer.Option(False, "--force", help="Replace a different model of that name."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n",
                                 help="List what would be adopted; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List models you already have (Ollama, Hugging Face cache, LM Studio), or adopt them.

    With no arguments, list what the known places hold.  With paths or --all,
    adopt them: only manifests are written; the weights are hard links to your
    files (symlinks across file systems), never copies.
    """
    from locallama.store import Store, discover  # here, so other commands start fast

    settings = Settings.from_env()
    store = Store(settings.models_dir)

    def warn(message: str) -> None:
        err_console.print(message, markup=False, soft_wrap=True)

    candidates = discover.discover(store, settings, warn) if all_ or not paths else []
    for path in paths or []:
        candidates += discover.scan(store, path, warn)
    if name is not None:
        if len(candidates) != 1 or candidates[0].kind == discover.OLLAMA:
            raise InvalidRequest("--name needs exactly one model file")
        candidates = [discover.with_name(store, candidates[0], name)]

    if dry_run or not (paths or all_):
        _print_candidates(candidates, as_json, settings, bool(paths))
        return
    if not candidates:
        if paths:
            raise InvalidRequest(f"no models found in {', '.join(str(p) for p in paths)}")
        err_console.print("no models found in " + _places(settings), markup=False, soft_wrap=True)
        if as_json:
            print_json([])
        return
    _adopt_all(store, candidates, force, as_json, warn, settings.load_check_timeout)


def _print_candidates(candidates: list, as_json: bool, settings: Settings, given: bool) -> None:
    if as_json:
        print_json([c.to_json() for c in candidates])
        return
    if not candidates:
        where = "the paths given" if given else _places(settings)
        err_console.print(f"no models found in {where}", markup=False, soft_wrap=True)
        return
    rows = [("NAME", "SOURCE", "SIZE", "STORED", "PATH")]
    rows += [(c.name.display, c.kind, format_bytes(c.size), "yes" if c.in_store else "no",
              str(c.path)) for c in candidates]
    typer.echo(columns(rows))
    if not given and any(not c.in_store for c in candidates):
        err_console.print("adopt them with `locallama import --all`, or one with "
                          "`locallama import PATH`", markup=False, soft_wrap=True)


def _adopt_all(store, candidates: list, force: bool, as_json: bool, warn,
               check_timeout: float) -> None:
    """Adopt each candidate; one that fails is reported and the rest go on."""
    from locallama.engine.load_check import check_loads
    from locallama.store import importer

    def check(path: Path, digest: str | None) -> None:
        check_loads(path, check_timeout, digest)

    results, failures = [], 0
    for candidate in candidates:
        try:
            with _Bars() as bars:
                result = importer.adopt(store, candidate, bars.show, force=force,
                                        check=check)
        except LocallamaError as exc:
            if len(candidates) == 1:
                raise
            failures += 1
            where = "" if str(candidate.path) in str(exc) else f" {candidate.path}"
            warn(f"could not import{where}: {exc}")
            continue
        results.append(result)
        if result.status == importer.SKIPPED:
            warn(result.message())
        elif not as_json:
            typer.echo(result.message())
    if as_json:
        print_json([r.to_json() for r in results])
    if failures:
        raise LocallamaError(f"{failures} of {len(candidates)} models could not be imported")


class _Bars:
    """A hashing progress bar, drawn only once a big file is being hashed."""

    def __init__(self) -> None:
        self.progress = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def show(self, event) -> None:
        if not (event.digest and event.total and err_console.is_terminal):
            return  # step names ("writing manifest"): the result line says what happened
        if self.progress is None:
            self.progress = transfer_bars(transient=True)
            self.progress.start()
        if event.digest not in self.tasks:
            self.tasks[event.digest] = self.progress.add_task(event.status, total=event.total)
        self.progress.update(self.tasks[event.digest], completed=event.completed or 0)


def _places(settings: Settings) -> str:
    from locallama.store.discover import known_places

    return ", ".join(str(folder) for _, folder in known_places(settings))
