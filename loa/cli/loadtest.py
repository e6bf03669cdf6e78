"""``loa loadtest``: a fleet of simulated endpoints against a server (one it starts on loopback,
or ``--url``), with scripted faults, measured and reported; with ``--mqtt``, the MQTT control
plane instead of the media path. The work is ``loa.loadtest``'s; this only maps the options."""

from __future__ import annotations

import argparse

from loa.cli.text import _


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``loadtest`` to the subcommands ``sub``."""
    text = _("a fleet of simulated endpoints, with faults, measured")
    lt = sub.add_parser("loadtest", help=text, description=text)
    lt.add_argument("--url", help=_("server to test (default: start one on loopback)"))
    lt.add_argument("--token", default="loadtest", help=_("admin token of that server"))
    lt.add_argument("--source-password", default="loadtest")
    lt.add_argument("--server-pid", type=int, help=_("pid of a --url server, for CPU and RSS"))
    lt.add_argument("--endpoints", type=int, default=1000)
    lt.add_argument("--protocol", choices=["ws", "ogg", "mp3"], default="ws")
    lt.add_argument("--procs", type=int, help=_("worker processes (default: one per core)"))
    lt.add_argument("--ramp", type=float, default=5.0, help=_("seconds to connect them all"))
    lt.add_argument("--seconds", type=float, default=30.0, help=_("length of the run"))
    lt.add_argument("--zones", help=_("comma-separated zones (default: every leaf zone)"))
    lt.add_argument("--takeover-at", type=float,
                    help=_("s: take the root zone live (then release)"))
    lt.add_argument("--takeover-hold", type=float, default=5.0)
    lt.add_argument("--cut-source-at", type=float, help=_("s: kill the live source"))
    lt.add_argument("--alert-at", type=float, help=_("s: an emergency alert on every zone"))
    lt.add_argument("--villages", type=int, default=0,
                    help=_("our own server gets a district of this many village zones"))
    lt.add_argument("--storm-at", type=float,
                    help=_("s: drop a fraction; all reconnect at once"))
    lt.add_argument("--storm-fraction", type=float, default=0.3)
    lt.add_argument("--slow-at", type=float, help=_("s: a fraction of endpoints stop reading"))
    lt.add_argument("--slow-fraction", type=float, default=0.05)
    lt.add_argument("--slow-seconds", type=float, default=10.0)
    lt.add_argument("--mqtt", action="store_true",
                    help=_("the MQTT control plane instead of the media path: endpoints online "
                           "over MQTT, idle CPU, zone-wide volume acknowledgements"))
    lt.add_argument("--broker", choices=["embedded", "mosquitto"], default="embedded",
                    help=_("with --mqtt: the server's embedded broker or a private Mosquitto"))
    lt.add_argument("--idle", type=float, default=20.0,
                    help=_("with --mqtt: idle seconds measured"))
    lt.add_argument("--rounds", type=int, default=5, help=_("with --mqtt: volume commands sent"))
    lt.add_argument("--json", dest="json_path", help=_("write the report as JSON here"))
    lt.add_argument("--html", dest="html_path",
                    help=_("write a self-contained HTML report here"))
    lt.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the load test; the exit status is the runner's (``loadtest_main`` or
    ``mqtt_loadtest_main``)."""
    if args.mqtt:
        from loa.loadtest.mqtt_fleet import MqttLoadSpec, mqtt_loadtest_main

        return mqtt_loadtest_main(MqttLoadSpec(
            endpoints=args.endpoints, procs=args.procs or 2, villages=args.villages or 20,
            broker=args.broker, ramp_s=args.ramp, idle_s=args.idle, rounds=args.rounds,
            json_path=args.json_path))
    from loa.loadtest.runner import LoadSpec, loadtest_main

    spec = LoadSpec(
        url=args.url, token=args.token, source_password=args.source_password,
        server_pid=args.server_pid, endpoints=args.endpoints, protocol=args.protocol,
        ramp_s=args.ramp, seconds=args.seconds,
        zones=args.zones.split(",") if args.zones else None,
        takeover_at=args.takeover_at, takeover_hold_s=args.takeover_hold,
        cut_source_at=args.cut_source_at, alert_at=args.alert_at,
        village_zones=args.villages, storm_at=args.storm_at,
        storm_fraction=args.storm_fraction, slow_at=args.slow_at,
        slow_fraction=args.slow_fraction, slow_seconds=args.slow_seconds,
        json_path=args.json_path, html_path=args.html_path,
    )
    if args.procs:
        spec.procs = args.procs
    return loadtest_main(spec)
