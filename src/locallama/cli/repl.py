"""The chat REPL: prompt_toolkit input, streamed answers, Ollama's slash commands."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory

from locallama.cli.answer import ensure_model, stream_to_stdout
from locallama.cli.interrupt import ctrl_c_stops
from locallama.cli.output import console, err_console, timing_block
from locallama.cli.repl_images import attach_images
from locallama.engine.reasoning import LEVELS
from locallama.errors import Cancelled, LocallamaError
from locallama.options import coerce_option, resolve_options
from locallama.runtime.base import Runtime
from locallama.runtime.types import ChatRequest, Message, Think
from locallama.store.modelfile import Modelfile

HELP = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message.
Ctrl-C stops an answer; Ctrl-D leaves."""

SET_HELP = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking (or: /set think low|medium|high)
  /set nothink           Disable thinking
  /set hidethinking      Hide what the model thinks
  /set nohidethinking    Show what the model thinks"""

SHOW_HELP = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template"""


class Repl:
    def __init__(self, runtime: Runtime, model: str, verbose: bool = False,
                 history_file: Path | None = None, think: Think = None,
                 hide_thinking: bool = False) -> None:
        self.runtime = runtime
        self.model = model
        self.verbose = verbose
        self.think = think
        self.hide_thinking = hide_thinking
        self.system: str | None = None
        self.options: dict[str, Any] = {}
        self.messages: list[Message] = []
        if history_file is None:
            history_file = runtime.settings.history_file
        self.session: PromptSession[str] = PromptSession(history=_history(history_file))

    def loop(self) -> None:
        while True:
            try:
                line = self._read()
            except KeyboardInterrupt:
                console.print("Use Ctrl + d or /bye to exit.")
                continue
            except EOFError:
                return
            if line is None:
                continue
            try:
                if line.startswith("/"):
                    if self.command(line) == "bye":
                        return
                elif line.strip():
                    self.send(line)
            except LocallamaError as exc:
                err_console.print(f"Error: {exc}", markup=False)
            except KeyboardInterrupt:  # during a slash command: drop it, keep the session
                sys.stdout.write("\n")

    def _read(self) -> str | None:
        line = self.session.prompt(">>> ", placeholder="Send a message (/? for help)")
        if not line.lstrip().startswith('"""'):
            return line
        parts = [line.lstrip()[3:]]
        while not parts[-1].rstrip().endswith('"""'):
            parts.append(self.session.prompt("... ", placeholder='Use """ to end multi-line input'))
        text = "\n".join(parts)
        return text.rstrip()[:-3]

    def send(self, text: str) -> None:
        text, images, files = attach_images(text, self.runtime.settings.max_image_bytes)
        for path in files:
            console.print(f"Added image '{path}'", markup=False, soft_wrap=True)
        messages = list(self.messages)
        if self.system:
            messages.insert(0, Message("system", self.system))
        messages.append(Message("user", text, images))
        answer: list[str] = []
        thought: list[str] = []

        def collect(chunks, stop):
            for chunk in chunks:
                if stop.is_set():  # the KeyboardInterrupt was lost on its way
                    raise KeyboardInterrupt
                thought.append(chunk.thinking)
                if not answer and not chunk.done and not chunk.thinking:
                    # A chat answer starts on its own line: drop the space or newline a
                    # model often writes after "Assistant:" before its first word.
                    chunk.text = chunk.text.lstrip()
                    if not chunk.text:
                        continue
                answer.append(chunk.text)
                yield chunk

        chunks = None
        with ctrl_c_stops() as stop:
            try:
                chunks = self.runtime.chat(ChatRequest(self.model, messages, dict(self.options),
                                                       think=self.think))
                final = stream_to_stdout(collect(chunks, stop), self.hide_thinking)
            except (KeyboardInterrupt, Cancelled) as exc:
                if not stop.is_set() and isinstance(exc, Cancelled):
                    raise
                if chunks is not None:
                    chunks.close()
                sys.stdout.write("\n")
                return  # the interrupted exchange is dropped; the session goes on
        sys.stdout.write("\n\n")
        sys.stdout.flush()
        self.messages += [Message("user", text, images),
                          Message("assistant", "".join(answer), thinking="".join(thought))]
        if self.verbose and final is not None:
            err_console.print(timing_block(final) + "\n", markup=False)

    # -- slash commands -------------------------------------------------------

    def command(self, line: str) -> str | None:
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        cmd, args = words[0].lower(), words[1:]
        if cmd in ("/bye", "/exit"):
            return "bye"
        if cmd in ("/?", "/help"):
            topic = args[0] if args else ""
            console.print({"set": SET_HELP, "show": SHOW_HELP}.get(topic, HELP), markup=False)
        elif cmd == "/clear":
            self.messages.clear()
            console.print("Cleared session context")
        elif cmd == "/set":
            self._set(line, args)
        elif cmd == "/show":
            self._show(args)
        elif cmd == "/load":
            if len(args) != 1:
                console.print("Usage:\n  /load <modelname>")
                return None
            ensure_model(self.runtime, args[0])
            self.model, self.messages = args[0], []
            console.print(f"Loading model '{args[0]}'", markup=False)
        elif cmd == "/save":
            if len(args) != 1:
                console.print("Usage:\n  /save <modelname>")
                return None
            self._save(args[0])
        else:
            console.print(f"Unknown command '{cmd}'. Type /? for help", markup=False)
        return None

    def _set(self, line: str, args: list[str]) -> None:
        if not args:
            console.print(SET_HELP, markup=False)
        elif args[0] == "parameter" and len(args) >= 3:
            name, raw = args[1], " ".join(args[2:])
            value = coerce_option(name, raw)
            if name == "stop":
                value = [*self.options.get("stop", []), *value]
            candidate = {**self.options, name: value}
            resolve_options(candidate)  # refuse out-of-range values now
            self.options = candidate
            console.print(f"Set parameter '{name}' to '{raw}'", markup=False)
        elif args[0] == "system" and len(args) >= 2:
            text = line.split("system", 1)[1].strip()
            self.system = text.strip('"') if text.startswith('"') else text
            console.print("Set system message.")
        elif args[0] == "verbose":
            self.verbose = True
            console.print("Set 'verbose' mode.")
        elif args[0] == "quiet":
            self.verbose = False
            console.print("Set 'quiet' mode.")
        elif args[0] == "think":
            level = args[1] if len(args) > 1 else None
            if level is not None and level not in LEVELS:
                console.print(f"Invalid think level '{level}': use low, medium or high",
                              markup=False)
                return
            self.think = level or True
            console.print(f"Set 'think' mode{f' to {level!r}' if level else ''}.",
                          markup=False)
        elif args[0] == "nothink":
            self.think = False
            console.print("Set 'nothink' mode.")
        elif args[0] in ("hidethinking", "nohidethinking"):
            self.hide_thinking = args[0] == "hidethinking"
            console.print(f"Set '{args[0]}' mode.")
        else:
            console.print(SET_HELP, markup=False)

    def _show(self, args: list[str]) -> None:
        from locallama.cli.models import _parameter_lines, _print_details

        what = args[0] if args else ""
        details = self.runtime.show(self.model)
        if what == "info":
            _print_details(details)
        elif what == "template":
            console.print(details.template or "No prompt template was specified for this model.",
                          markup=False)
        elif what == "system":
            console.print(self.system or details.system or "No system message was specified.",
                          markup=False)
        elif what == "parameters":
            params = {**details.parameters, **self.options}
            console.print(_parameter_lines(params) or "No parameters were specified.",
                          markup=False)
        elif what == "modelfile":
            console.print(details.modelfile, markup=False)
        elif what == "license":
            console.print("\n\n".join(details.licenses) or "No license was specified.",
                          markup=False)
        else:
            console.print(SHOW_HELP, markup=False)

    def _save(self, name: str) -> None:
        params = [(k, str(v)) for k, vs in self.options.items()
                  for v in (vs if isinstance(vs, list) else [vs])]
        modelfile = Modelfile(
            from_=self.model,
            system=self.system,
            parameters=params,
            messages=[(m.role, m.content) for m in self.messages],
        )
        self.runtime.create(name, modelfile, Path.cwd())
        console.print(f"Created new model '{name}'", markup=False)


def _history(path: Path | None):
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileHistory(str(path))
    except OSError:
        return InMemoryHistory()
