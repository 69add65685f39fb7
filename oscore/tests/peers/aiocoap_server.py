#!/usr/bin/env python3
"""aiocoap OSCORE file server for the interop tests and the benchmark.

usage: aiocoap_server.py --port P --context DIR --serve DIR [--exit-after S]

GET /NAME serves DIR/NAME, PUT /NAME stores the body in DIR/NAME (NAME: a file present at
start, "upload", or one given with --resource). Every resource requires
OSCORE (the site is wrapped in OscoreSiteWrapper); block-wise is handled by aiocoap inside
OSCORE. Prints "ready" once listening; exits by itself after --exit-after seconds.
"""
import argparse
import asyncio
import sys
from pathlib import Path

import aiocoap
import aiocoap.resource as resource
from aiocoap import oscore
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper


class FileResource(resource.Resource):
    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    async def render_get(self, request):
        try:
            return aiocoap.Message(payload=self.path.read_bytes())
        except FileNotFoundError:
            return aiocoap.Message(code=aiocoap.NOT_FOUND)

    async def render_put(self, request):
        existed = self.path.exists()
        self.path.write_bytes(request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED if existed else aiocoap.CREATED)


def make_site(root: Path, names):
    site = resource.Site()
    for name in sorted(set(names) | {f.name for f in root.iterdir() if f.is_file()}):
        site.add_resource([name], FileResource(root / name))
    return site


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--context", type=Path, required=True)
    p.add_argument("--serve", type=Path, required=True)
    p.add_argument("--exit-after", type=float, default=300)
    p.add_argument("--resource", action="append", default=["upload"], help="extra resource names (PUT targets)")
    o = p.parse_args()
    creds = CredentialsMap()
    creds[":peer"] = oscore.FilesystemSecurityContext(str(o.context))
    site = OscoreSiteWrapper(make_site(o.serve, o.resource), creds)
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", o.port))
    print("ready", flush=True)
    try:
        await asyncio.sleep(o.exit_after)
    finally:
        await ctx.shutdown()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
