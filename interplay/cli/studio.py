"""``interplay studio``: the local web app (runs, head-to-head studies, talking to a simulator)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from interplay.cli.app import app, bad_input, console


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str) -> int:
    """A port free on ``host`` now (for ``--port 0``, so the address can be printed)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@app.command()
def studio(
    run_dirs: list[str] = typer.Argument(None, help="run or evaluation folders, or folders holding them "
                                                    "(searched a few levels down; default: runs)"),
    study: list[str] = typer.Option([], "--study", help="a study file of 'interplay study create' (repeatable)"),
    data: list[str] = typer.Option([], "--data", help="data a person may talk on: 'demo' or a data folder "
                                                      "(repeatable; default: demo)"),
    talk_out: str = typer.Option("runs/talk", help="where talk episodes are logged (one run folder per role and agent)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback exposes the runs, "
                                               "the studies' results and the talk page to the network"),
    port: int = typer.Option(8765, min=0, max=65535, help="port (0: any free port)"),
) -> None:
    """Start Interplay Studio, a local web app: read runs and transcripts, run a human
    head-to-head study, talk to a simulator."""
    import uvicorn

    from interplay.studio.app import create_app

    roots = run_dirs or ["runs"]
    for root in roots:
        if not Path(root).is_dir():
            console.print(f"[yellow]warning:[/yellow] {root} is not a folder (yet); nothing is served from it")
    with bad_input(FileNotFoundError, ValueError, OSError):
        application = create_app(roots, study, data or ["demo"], talk_out)
    if not is_loopback(host):
        console.print(f"[yellow]warning:[/yellow] binding {host}: anyone who can reach this address can read "
                      "the served runs and the studies' results, and start talk sessions")
    if port == 0:
        port = free_port(host)
    console.print(f"Interplay Studio on http://{host}:{port}/  (Ctrl-C stops it)")
    for sid, found in application.state.studio.studies.items():
        console.print(f"  study {sid}: http://{host}:{port}/studies/{sid}  ({found.path})")
    uvicorn.run(application, host=host, port=port, log_level="warning")
