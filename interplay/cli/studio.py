"""``interplay studio``: the local web app (runs, head-to-head studies, talking to a simulator)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Optional

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
    talk_agent: list[str] = typer.Option([], "--talk-agent", help="an agent spec the talk page offers (repeatable; "
                                         "default: rule, llm, zero-shot); any other spec from the web is refused"),
    talk_out: str = typer.Option("runs/talk", help="where talk episodes are logged (one run folder per role and agent)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but loopback lets the network reach the "
                                               "judges' pages, and the operator's pages to whoever has the admin token"),
    port: int = typer.Option(8765, min=0, max=65535, help="port (0: any free port)"),
    admin_token: Optional[str] = typer.Option(None, "--admin-token", envvar="INTERPLAY_STUDIO_TOKEN",
                                              help="the operator's token (at least 16 characters; default: a random "
                                                   "one, printed once)"),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="a host name judges reach the studio by "
                                           "(repeatable; loopback names always; requests for any other are 400)"),
) -> None:
    """Start Interplay Studio, a local web app: read runs and transcripts, run a human
    head-to-head study, talk to a simulator. The operator's pages need the admin token printed at
    start; each judge's link reaches only that judge's pairs."""
    import uvicorn

    from interplay.studio.access import allowed_hosts, bind_hosts
    from interplay.studio.app import DEFAULT_TALK_AGENTS, create_app

    roots = run_dirs or ["runs"]
    for root in roots:
        if not Path(root).is_dir():
            console.print(f"[yellow]warning:[/yellow] {root} is not a folder (yet); nothing is served from it")
    hosts = [*allowed_host, *bind_hosts(host)]
    with bad_input(FileNotFoundError, ValueError, OSError):
        application = create_app(roots, study, data or ["demo"], talk_out, admin_token=admin_token, hosts=hosts,
                                 talk_agents=talk_agent or DEFAULT_TALK_AGENTS)
    access = application.state.access
    if not is_loopback(host):
        console.print(f"[yellow]warning:[/yellow] binding {host}: the network can reach this studio over plain "
                      "HTTP. Judges' links reach their own pairs only; the runs, transcripts, talk page, study "
                      "results and exports need the admin token, which (like every judge's link) travels in clear "
                      "text unless a TLS proxy is in front. Host names answered: "
                      f"{', '.join(allowed_hosts(hosts))}", soft_wrap=True)
    if port == 0:
        port = free_port(host)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    where = "this machine only" if is_loopback(host) else "the network: see the warning above"
    console.print(f"Interplay Studio on http://{host}:{port}/  (reachable from {where}; Ctrl-C stops it)",
                  markup=False, soft_wrap=True)
    if admin_token is None:
        console.print(f"  operator's link (printed once; it sets a cookie): http://{shown}:{port}/?token={access.admin_token}",
                      markup=False, soft_wrap=True)
    else:
        console.print(f"  operator's link: http://{shown}:{port}/?token=<the admin token given>", markup=False,
                      soft_wrap=True)
    for sid, found in application.state.studio.studies.items():
        console.print(f"  study {sid}: http://{shown}:{port}/studies/{sid}  ({found.path})", markup=False,
                      soft_wrap=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")

